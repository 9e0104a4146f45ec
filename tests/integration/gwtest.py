"""Harness for the dnsgw integration tests (Python 3 stdlib only).

Starts real servers on 127.0.0.1 high ports in a temporary directory and kills
them at exit (also on failure): unbound with a local zone (never recursing),
the scripted responder (responder.py) and dnsgw itself. Drives them with kdig,
dig and raw socket/TLS clients.

A test file builds a Suite, registers cases with @suite.case and calls
suite.main(). Each case receives the Suite (fixtures are created lazily and
shared: suite.fixture(name, factory)). Output: one "ok - name" or
"FAIL - name: why" line per case (details follow as "# " lines), then
"N passed, M failed"; the exit status is non-zero on any failure.

Never does anything that could reach the resolver of /etc/resolv.conf: every
gateway gets an explicit upstream.
"""

import argparse
import atexit
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dnswire as W  # noqa: E402

# Not DNSGW_*: dnsgw treats unknown DNSGW_* variables as configuration errors.
KEEP = bool(os.environ.get('GWTEST_KEEP'))        # keep temp dirs
VERBOSE = bool(os.environ.get('GWTEST_VERBOSE'))  # echo every client run

_procs = []
_tmpdirs = []


def _cleanup():
    for p in list(_procs):
        if p.poll() is None:
            try:
                p.kill()
            except OSError:
                pass
            try:
                p.wait(5)
            except Exception:
                pass
    if not KEEP:
        for d in _tmpdirs:
            shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup)


def _on_signal(signum, frame):
    _cleanup()
    os._exit(128 + signum)


signal.signal(signal.SIGTERM, _on_signal)


def spawn(args, **kw):
    p = subprocess.Popen(args, **kw)
    _procs.append(p)
    return p


def tmpdir(prefix='dnsgw-it-'):
    d = tempfile.mkdtemp(prefix=prefix)
    _tmpdirs.append(d)
    return d


class TestFailure(Exception):
    """A failed assertion; str() is the one-line reason, .details more."""

    def __init__(self, why, details=''):
        super().__init__(why)
        self.details = details


def check(cond, why, details=''):
    if not cond:
        raise TestFailure(why, details)


def free_port():
    """A port free for both UDP and TCP on 127.0.0.1 (bind port 0)."""
    for _ in range(100):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(('127.0.0.1', 0))
        port = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind(('127.0.0.1', port))
            return port
        except OSError:
            continue
        finally:
            u.close()
            t.close()
    raise RuntimeError('no free port')


class Blackhole:
    """A bound UDP socket that never answers (no ICMP unreachable either)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(('127.0.0.1', 0))
        self.port = self.sock.getsockname()[1]
        # a TCP listener too, never accepting: connects hang in the backlog
        self.tsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.tsock.bind(('127.0.0.1', self.port))
            self.tsock.listen(1)
        except OSError:
            pass


def closed_port():
    """A port where nothing listens (UDP gets ICMP port unreachable)."""
    return free_port()


# ---------------------------------------------------------------------------
# certificates

def gen_cert(d, name='dnsgw.test', prefix='server', ca=None):
    """Self-signed EC P-256 cert + key with SAN DNS:name and IP:127.0.0.1.
    Returns (cert_path, key_path)."""
    cert = os.path.join(d, prefix + '.crt')
    key = os.path.join(d, prefix + '.key')
    r = subprocess.run(
        ['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
         'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj',
         '/CN=' + name, '-addext',
         'subjectAltName=DNS:%s,IP:127.0.0.1' % name,
         '-keyout', key, '-out', cert],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    if r.returncode != 0:
        raise RuntimeError('openssl failed: ' + r.stdout.decode(errors='replace'))
    os.chmod(key, 0o600)
    return cert, key


# ---------------------------------------------------------------------------
# raw clients

def udp_query(port, wire, timeout=3.0, host='127.0.0.1'):
    """Sends one UDP message, returns the parsed answer (raises on timeout)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(wire, (host, port))
        raw, _ = s.recvfrom(65535)
        return W.parse(raw)
    finally:
        s.close()


def tls_context(ca=None, hostname_check=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca:
        ctx.load_verify_locations(ca)
        ctx.check_hostname = hostname_check
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Closed(Exception):
    pass


class StreamClient:
    """A DNS-over-TCP or DNS-over-TLS client with 2-byte framing.

    recv_msg() returns a parsed Msg; raises Closed on EOF/reset and
    socket.timeout when nothing arrives in time."""

    def __init__(self, port, tls=True, host='127.0.0.1', timeout=5.0, ca=None,
                 server_hostname=None, rcvbuf=None, handshake=True):
        self.port = port
        self.tls = tls
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(timeout)
        raw.connect((host, port))
        self.local_port = raw.getsockname()[1]
        self.raw = raw
        self.sock = raw
        if tls:
            ctx = tls_context(ca, hostname_check=bool(server_hostname))
            self.sock = ctx.wrap_socket(raw, server_hostname=server_hostname,
                                        do_handshake_on_connect=handshake)
        self.buf = b''
        self.timeout = timeout
        self.closed = False

    def settimeout(self, t):
        self.sock.settimeout(t)

    def send(self, data):
        self.sock.sendall(data)

    def send_msg(self, wire):
        self.sock.sendall(W.frame(wire))

    def _fill(self):
        try:
            data = self.sock.recv(65536)
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError,
                BrokenPipeError, ConnectionAbortedError) as e:
            self.closed = True
            raise Closed(type(e).__name__)
        except ssl.SSLError as e:
            self.closed = True
            raise Closed('SSLError: %s' % e)
        if not data:
            self.closed = True
            raise Closed('EOF')
        self.buf += data

    def recv_raw_msg(self, timeout=None):
        """The next framed message as bytes."""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        while True:
            if len(self.buf) >= 2:
                n = struct.unpack('!H', self.buf[:2])[0]
                if len(self.buf) >= 2 + n:
                    m, self.buf = self.buf[2:2 + n], self.buf[2 + n:]
                    return m
            self._fill()

    def recv_msg(self, timeout=None):
        return W.parse(self.recv_raw_msg(timeout))

    def query(self, wire, timeout=None):
        self.send_msg(wire)
        return self.recv_msg(timeout)

    def wait_closed(self, timeout):
        """Seconds until the peer closes the connection, or None if it is
        still open after timeout. Messages received meanwhile are kept in
        self.unexpected."""
        self.unexpected = []
        t0 = time.monotonic()
        while True:
            left = timeout - (time.monotonic() - t0)
            if left <= 0:
                return None
            try:
                self.unexpected.append(self.recv_raw_msg(left))
            except Closed:
                return time.monotonic() - t0
            except (socket.timeout, TimeoutError):
                return None
            except ssl.SSLWantReadError:
                continue

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------
# command-line clients

class Result:
    def __init__(self, args, rc, out, err, elapsed):
        self.args, self.rc, self.out, self.err, self.elapsed = args, rc, out, err, elapsed

    @property
    def text(self):
        return self.out + self.err

    @property
    def status(self):
        m = re.search(r'status: (\w+)', self.out)
        return m.group(1) if m else None

    @property
    def flags(self):
        """Header flags as a set (kdig ';; Flags: qr rd ra;' or dig ';; flags: qr rd ra;')."""
        m = re.search(r';; [Ff]lags: ([a-z ]*)', self.out)
        return set(m.group(1).split()) if m else set()

    def answers(self, rtype='A'):
        """RDATA strings of records of rtype in the answer section."""
        out = []
        section = None
        for line in self.out.splitlines():
            low = line.lower()
            if low.startswith(';; answer section') or low.startswith(';; answer section:'):
                section = 'answer'
                continue
            if line.startswith(';;') and section == 'answer' and 'section' in low:
                section = None
                continue
            if section != 'answer' or not line.strip() or line.startswith(';'):
                continue
            parts = line.split()
            # name [ttl] [class] type rdata...
            for i, p in enumerate(parts[1:], 1):
                if p.upper() == rtype.upper() and i >= 2:
                    out.append(' '.join(parts[i + 1:]))
                    break
        return out

    def describe(self):
        return ('$ %s\n(rc=%s, %.2fs)\n%s%s' %
                (' '.join(self.args), self.rc, self.elapsed, self.out,
                 ('stderr:\n' + self.err) if self.err else ''))


def run(args, timeout=30, env=None, input=None):
    t0 = time.monotonic()
    try:
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout, env=env, input=input)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = 'timeout', e.stdout or b'', e.stderr or b''
    r = Result(args, rc, out.decode(errors='replace'), err.decode(errors='replace'),
               time.monotonic() - t0)
    if VERBOSE:
        print('# ' + r.describe().replace('\n', '\n# '))
    return r


def kdig(port, name, qtype='A', tls=True, tcp=False, extra=(), timeout=3,
         retry=0):
    args = ['kdig', '@127.0.0.1', '-p', str(port)]
    if tls:
        args.append('+tls')
    elif tcp:
        args.append('+tcp')
    else:
        args.append('+notcp')
    args += ['+timeout=%d' % timeout, '+retry=%d' % retry]
    args += list(extra) + [name, qtype]
    return run(args, timeout=timeout * (retry + 1) + 15)


def dig(port, name, qtype='A', tls=False, tcp=False, extra=(), timeout=3,
        tries=1):
    args = ['dig', '@127.0.0.1', '-p', str(port)]
    if tls:
        args.append('+tls')
    elif tcp:
        args.append('+tcp')
    args += ['+timeout=%d' % timeout, '+tries=%d' % tries]
    args += list(extra) + [name, qtype]
    return run(args, timeout=timeout * tries * 2 + 15)


def expect_answer(r, want, rtype='A', status='NOERROR'):
    """Fails unless the client run r got status and exactly the records want."""
    check(r.rc == 0, 'client exited %s' % r.rc, r.describe())
    check(r.status == status, 'status %s, want %s' % (r.status, status), r.describe())
    if want is not None:
        got = r.answers(rtype)
        check(sorted(got) == sorted(want), 'answer %s, want %s' % (got, want),
              r.describe())


# ---------------------------------------------------------------------------
# servers

def _wait_udp_answer(port, name, deadline, proc=None, what='server'):
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError('%s exited with %s' % (what, proc.returncode))
        try:
            return udp_query(port, W.build_query(name), timeout=0.3)
        except (socket.timeout, OSError) as e:
            last = e
            time.sleep(0.1)
    raise RuntimeError('%s on port %d did not answer: %s' % (what, port, last))


class Unbound:
    """unbound serving only local data for example.test (REFUSED elsewhere).

    www.example.test A 192.0.2.10, AAAA 2001:db8::10; txt.example.test TXT;
    everything else in example.test: NXDOMAIN with SOA."""

    LOCAL_DATA = [
        'example.test. 300 IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 300',
        'example.test. 300 IN NS ns.example.test.',
        'ns.example.test. 300 IN A 192.0.2.53',
        'www.example.test. 300 IN A 192.0.2.10',
        'www.example.test. 300 IN AAAA 2001:db8::10',
        'txt.example.test. 300 IN TXT "hello world"',
    ]

    def __init__(self, extra_local_data=()):
        self.dir = tmpdir('dnsgw-unbound-')
        self.port = free_port()
        self.conf = os.path.join(self.dir, 'unbound.conf')
        self.log = os.path.join(self.dir, 'unbound.log')
        data = '\n'.join('    local-data: "%s"' % d.replace('"', '\\"')
                         for d in list(self.LOCAL_DATA) + list(extra_local_data))
        with open(self.conf, 'w') as f:
            f.write('''server:
    interface: 127.0.0.1@{port}
    port: {port}
    do-ip6: no
    do-daemonize: no
    chroot: ""
    username: ""
    directory: "{dir}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 1
    num-threads: 1
    module-config: "iterator"
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    edns-tcp-keepalive: yes
    incoming-num-tcp: 64
    local-zone: "." refuse
    local-zone: "example.test." static
{data}
remote-control:
    control-enable: no
'''.format(port=self.port, dir=self.dir, data=data))
        self.proc = None

    def start(self):
        self.logf = open(self.log, 'w')
        self.proc = spawn(['unbound', '-d', '-c', self.conf],
                          stdout=self.logf, stderr=subprocess.STDOUT)
        try:
            _wait_udp_answer(self.port, 'www.example.test.',
                             time.monotonic() + 10, self.proc, 'unbound')
        except RuntimeError as e:
            raise RuntimeError('%s; log: %s' % (e, open(self.log).read()[-2000:]))
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class ResponderProc:
    """responder.py in a subprocess; its JSON-lines log is read by records()."""

    def __init__(self):
        self.dir = tmpdir('dnsgw-responder-')
        self.log = os.path.join(self.dir, 'responder.jsonl')
        self.proc = None
        self.port = None

    def start(self):
        self.proc = spawn([sys.executable, os.path.join(HERE, 'responder.py'),
                           '--log', self.log],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        line = self.proc.stdout.readline().decode()
        m = re.match(r'READY port=(\d+)', line)
        if not m:
            raise RuntimeError('responder did not start: %r' % line)
        self.port = int(m.group(1))
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self):
        for line in self.proc.stdout:
            sys.stderr.write('# responder: ' + line.decode(errors='replace'))

    def records(self, qname=None):
        """Logged messages (dicts), optionally only those for qname."""
        out = []
        try:
            with open(self.log) as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if qname is None or (rec.get('qname') or '').lower() == \
                            qname.lower().rstrip('.') + '.':
                        out.append(rec)
        except FileNotFoundError:
            pass
        return out

    def wait_records(self, qname, n=1, timeout=3.0):
        t0 = time.monotonic()
        while True:
            recs = self.records(qname)
            if len(recs) >= n or time.monotonic() - t0 > timeout:
                return recs
            time.sleep(0.05)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def yaml_dump(obj, indent=0):
    """Just enough YAML for our config files: dicts, lists, scalars."""
    pad = '  ' * indent
    out = ''
    for k, v in obj.items():
        if isinstance(v, dict):
            out += '%s%s:\n%s' % (pad, k, yaml_dump(v, indent + 1))
        elif isinstance(v, (list, tuple)):
            out += '%s%s:\n' % (pad, k)
            for item in v:
                out += '%s  - %s\n' % (pad, _yaml_scalar(item))
        else:
            out += '%s%s: %s\n' % (pad, k, _yaml_scalar(v))
    return out


def _yaml_scalar(v):
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, int):
        return str(v)
    return json.dumps(str(v))


class Gateway:
    """The dnsgw binary under test.

    With config (a dict), everything (listeners, upstreams, cert, limits) goes
    into a YAML file passed with -c; otherwise flags are used. Listener ports
    are chosen here: .dot, .dns (UDP+TCP same port)."""

    READY_TIMEOUT = 10

    def __init__(self, binary, upstreams, dot=True, dns=False, cert=None,
                 key=None, config=None, threads=1, extra_args=(), env=None):
        self.binary = binary
        self.dir = tmpdir('dnsgw-gw-')
        self.dot = free_port() if dot else None
        self.dns = free_port() if dns else None
        self.upstreams = list(upstreams)
        self.cert, self.key = cert, key
        self.listen = []
        if self.dot:
            self.listen.append('dot://127.0.0.1:%d' % self.dot)
        if self.dns:
            self.listen += ['udp://127.0.0.1:%d' % self.dns,
                            'tcp://127.0.0.1:%d' % self.dns]
        self.config = config
        self.threads = threads
        self.extra_args = list(extra_args)
        self.env = env
        self.proc = None
        self.lines = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.logpath = os.path.join(self.dir, 'dnsgw.log')

    def command(self):
        args = [self.binary]
        if self.config is not None:
            conf = dict(self.config)
            conf.setdefault('listen', self.listen)
            up = dict(conf.get('upstream', {}))
            up.setdefault('servers', self.upstreams)
            conf['upstream'] = up
            if self.cert:
                conf.setdefault('tls', {'cert': self.cert, 'key': self.key})
            conf.setdefault('threads', self.threads)
            self.config_path = os.path.join(self.dir, 'dnsgw.yaml')
            with open(self.config_path, 'w') as f:
                f.write(yaml_dump(conf))
            args += ['-c', self.config_path]
        else:
            for l in self.listen:
                args += ['--listen', l]
            for u in self.upstreams:
                args += ['--upstream', u]
            if self.cert:
                args += ['--cert', self.cert, '--key', self.key]
            args += ['--threads', str(self.threads)]
        return args + self.extra_args

    def start(self):
        args = self.command()
        self.args = args
        self.logf = open(self.logpath, 'w', buffering=1)
        self.stdout_path = os.path.join(self.dir, 'stdout.txt')
        env = self.env
        if env is None:
            # hermetic: no DNSGW_* from the caller's environment
            env = {k: v for k, v in os.environ.items() if not k.startswith('DNSGW_')}
        self.proc = spawn(args, stdout=open(self.stdout_path, 'w'),
                          stderr=subprocess.PIPE, env=env)
        self.reader = threading.Thread(target=self._reader, daemon=True)
        self.reader.start()
        t0 = time.monotonic()
        while not self.ready.wait(0.05):
            if self.proc.poll() is not None:
                self.reader.join(3)
                raise RuntimeError('dnsgw exited with %s before msg=ready\n$ %s\n%s' % (
                    self.proc.returncode, ' '.join(args), self.log_tail()))
            if time.monotonic() - t0 > self.READY_TIMEOUT:
                raise RuntimeError('dnsgw logged no msg=ready within %ds\n$ %s\n%s' % (
                    self.READY_TIMEOUT, ' '.join(args), self.log_tail()))
        # msg=ready must mean "listening". Whether it does is asserted by
        # test_cli's ready_means_listening; other cases wait up to 2 s more
        # for the stream listeners so that they test what they are about.
        self.refused_after_ready = self.stream_ports_refused()
        t1 = time.monotonic()
        while self.stream_ports_refused() and time.monotonic() - t1 < 2:
            time.sleep(0.02)
        return self

    def stream_ports_refused(self):
        """Stream listener ports that refuse a TCP connect right now."""
        out = []
        for port in (self.dot, self.dns):
            if not port:
                continue
            try:
                socket.create_connection(('127.0.0.1', port), timeout=2).close()
            except OSError:
                out.append(port)
        return out

    def _reader(self):
        for raw in self.proc.stderr:
            line = raw.decode(errors='replace').rstrip('\n')
            with self.lock:
                self.lines.append(line)
            self.logf.write(line + '\n')
            if re.search(r'\bmsg="?ready\b', line):
                self.ready.set()

    def stdout(self):
        try:
            with open(self.stdout_path) as f:
                return f.read()
        except OSError:
            return ''

    def log_tail(self, n=25):
        with self.lock:
            return '\n'.join('dnsgw: ' + l for l in self.lines[-n:])

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10):
        """SIGTERM; returns the exit status (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return None

    def sockets_of(self, local_port, peer_port):
        """ss lines of TCP sockets local_port<->peer_port owned by dnsgw."""
        r = run(['ss', '-tanpH', 'sport = :%d and dport = :%d' % (local_port, peer_port)],
                timeout=10)
        return [l for l in r.out.splitlines() if 'pid=%d,' % self.proc.pid in l]


# ---------------------------------------------------------------------------
# the suite runner

class Suite:
    def __init__(self, title):
        self.title = title
        self.cases = []
        self.fixtures = {}
        self.fixture_errors = {}
        self.stoppers = []
        self.binary = None
        self.current = None

    def case(self, fn=None, timeout=60):
        def reg(f):
            name = f.__name__
            if name.startswith('test_'):
                name = name[5:]
            self.cases.append((name, f, timeout))
            return f
        return reg(fn) if fn is not None else reg

    def fixture(self, name, factory):
        """The shared object made by factory() (started once; a failed
        factory fails every case that needs it with the same reason)."""
        if name in self.fixtures:
            return self.fixtures[name]
        if name in self.fixture_errors:
            raise TestFailure('fixture %s failed earlier: %s' %
                              (name, self.fixture_errors[name].splitlines()[0]))
        try:
            obj = factory()
        except Exception as e:
            self.fixture_errors[name] = str(e)
            raise TestFailure('fixture %s: %s' % (name, str(e).splitlines()[0]), str(e))
        self.fixtures[name] = obj
        if hasattr(obj, 'stop'):
            self.stoppers.append(obj)
        return obj

    def gateways(self):
        return [o for o in self.fixtures.values() if isinstance(o, Gateway)]

    def main(self):
        ap = argparse.ArgumentParser(description=self.title)
        ap.add_argument('--binary', required=True)
        ap.add_argument('--only', action='append',
                        help='run only cases whose name contains this (repeatable)')
        ap.add_argument('--list', action='store_true')
        a = ap.parse_args()
        self.binary = os.path.abspath(a.binary)
        if a.list:
            for name, _, _ in self.cases:
                print(name)
            return 0
        cases = self.cases
        if a.only:
            cases = [c for c in cases if any(o in c[0] for o in a.only)]
        passed = failed = 0
        print('# %s (%s)' % (self.title, self.binary), flush=True)
        if not os.access(self.binary, os.X_OK):
            for name, _, _ in cases:
                print('FAIL - %s: binary %s not executable' % (name, self.binary))
            print('0 passed, %d failed' % len(cases), flush=True)
            return 1
        try:
            for name, fn, timeout in cases:
                ok, why, details = self._run_case(name, fn, timeout)
                if ok:
                    passed += 1
                    print('ok - %s' % name, flush=True)
                else:
                    failed += 1
                    print('FAIL - %s: %s' % (name, why.replace('\n', ' | ')), flush=True)
                    if details:
                        for l in details.rstrip().splitlines():
                            print('#   ' + l)
                    sys.stdout.flush()
        finally:
            for obj in reversed(self.stoppers):
                try:
                    obj.stop()
                except Exception:
                    pass
            _cleanup()
        print('%d passed, %d failed' % (passed, failed), flush=True)
        return 1 if failed else 0

    def _run_case(self, name, fn, timeout):
        done = threading.Event()

        def watchdog():
            if not done.wait(timeout):
                print('FAIL - %s: hung for more than %ds (aborting the suite)' %
                      (name, timeout), flush=True)
                for g in self.gateways():
                    print('#   ' + g.log_tail().replace('\n', '\n#   '))
                print('0 passed, 1 failed', flush=True)
                _cleanup()
                os._exit(1)
        threading.Thread(target=watchdog, daemon=True).start()
        t0 = time.monotonic()
        try:
            fn(self)
            ok, why, details = True, '', ''
        except TestFailure as e:
            ok, why, details = False, str(e), e.details
        except Exception as e:
            ok, why, details = False, '%s: %s' % (type(e).__name__, e), traceback.format_exc()
        finally:
            done.set()
        # a gateway that died during the case fails it, whatever the case said
        for g in self.gateways():
            if g.proc is not None and not g.alive() and not getattr(g, 'stopped_on_purpose', False):
                if ok or 'exited' not in why:
                    ok = False
                    why = (why + '; ' if why else '') + 'dnsgw exited with %s' % g.proc.returncode
                    details = (details + '\n' if details else '') + g.log_tail(40)
                g.stopped_on_purpose = True  # report once
        if not ok:
            for g in self.gateways():
                if g.alive():
                    details += '\n' + g.log_tail(15)
        if VERBOSE:
            print('# %s took %.2fs' % (name, time.monotonic() - t0))
        return ok, why, details
