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

Every gateway started through Gateway.start() is also checked by the suite:
after each case, its stderr must hold no sanitizer report; at the end (the
extra case "teardown_gateways_exit_cleanly") each one still running gets
SIGTERM and must exit with status 0 within its drain deadline, and none may
have written a sanitizer report (in the ASan build a leak makes the exit
status non-zero and prints a LeakSanitizer report, so leaks fail the suite).

Gauges for abuse cases (REQUIREMENTS.md: "After every abuse test, gauges ...
return to baseline"): Gateway.snapshot() records the TCP connections dnsgw
owns on its listening ports (ss), its open fds (/proc/PID/fd) and its RSS;
Gateway.expect_baseline(snap) polls until both counts are back.

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
_gateways = []   # every Gateway whose start() was called, in order

# What a sanitizer writes to stderr: "==PID==ERROR: AddressSanitizer: ...",
# "ERROR: LeakSanitizer: detected memory leaks", "SUMMARY: ...Sanitizer",
# UBSan's "file.c:L:C: runtime error: ...".
SANITIZER_RE = re.compile(r'Sanitizer|runtime error:')

# Seconds allowed beyond the drain deadline for the process to exit (the
# leak scan of LeakSanitizer runs at exit).
EXIT_GRACE = 2.0


def sanitizer_report(text):
    """The sanitizer report in text (from its first line on, at most 60
    lines), or '' when there is none."""
    lines = text.splitlines() if isinstance(text, str) else list(text)
    for i, line in enumerate(lines):
        if SANITIZER_RE.search(line):
            return '\n'.join(lines[i:i + 60])
    return ''


def check_no_sanitizer(text, what='dnsgw'):
    rep = sanitizer_report(text)
    check(not rep, '%s: sanitizer report on stderr: %s' %
          (what, rep.splitlines()[0] if rep else ''), rep)


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


def stop_gateway_fixtures(s, timeout=10):
    """A suite's last case: SIGTERM to each gateway fixture still running;
    every one must exit 0."""
    for name, g in list(s.fixtures.items()):
        if not isinstance(g, Gateway) or not g.alive():
            continue
        rc = g.stop(timeout=timeout)
        check(rc == 0, '%s: exit status %s after SIGTERM' % (name, rc), g.log_tail())


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
        # UDP and a TCP listener that never accepts (connects hang in the
        # backlog) on the same port: retry until both binds succeed, else a
        # TCP upstream would see "connection refused" instead of silence.
        for _ in range(50):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(('127.0.0.1', 0))
            self.port = self.sock.getsockname()[1]
            self.tsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                self.tsock.bind(('127.0.0.1', self.port))
                self.tsock.listen(1)
                return
            except OSError:
                self.tsock.close()
                self.sock.close()
        raise RuntimeError('no port free for both UDP and TCP')


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


def reset_close(sock):
    """Closes a socket (plain or TLS) with an RST instead of a FIN (SO_LINGER
    0): a client that vanishes."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


_sanitized = {}


def sanitized(binary):
    """True when binary is built with AddressSanitizer."""
    if binary not in _sanitized:
        try:
            with open(binary, 'rb') as f:
                _sanitized[binary] = b'__asan_init' in f.read()
        except OSError:
            _sanitized[binary] = False
    return _sanitized[binary]


def small_quarantine_env():
    """The environment for a sanitized gateway whose RSS is measured: ASan's
    quarantine (256 MiB by default) holds freed memory back, which would
    look like growth, so it is made small for that gateway only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('DNSGW_')}
    opts = env.get('ASAN_OPTIONS', '')
    env['ASAN_OPTIONS'] = (opts + ':' if opts else '') + \
        'quarantine_size_mb=1:thread_local_quarantine_size_kb=64'
    return env


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
        self.exit_status = None     # set once the process is reaped
        self.stop_seconds = None    # SIGTERM to exit, when stop() sent it
        self.start_failed = False
        self.death_reported = False  # a case already failed on its exit
        self.san_checked = 0         # stderr lines already scanned

    def drain_ms(self):
        """The drain deadline this gateway was started with (ms)."""
        try:
            return int(self.config['limits']['drain_timeout_ms'])
        except (TypeError, KeyError, ValueError):
            return 5000

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
        _gateways.append(self)
        self.reader = threading.Thread(target=self._reader, daemon=True)
        self.reader.start()
        t0 = time.monotonic()
        while not self.ready.wait(0.05):
            if self.proc.poll() is not None:
                self.reader.join(3)
                self.start_failed = True
                self.exit_status = self.proc.returncode
                raise RuntimeError('dnsgw exited with %s before msg=ready\n$ %s\n%s' % (
                    self.proc.returncode, ' '.join(args), self.log_tail()))
            if time.monotonic() - t0 > self.READY_TIMEOUT:
                self.start_failed = True
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

    def lines_matching(self, pattern):
        with self.lock:
            return [l for l in self.lines if re.search(pattern, l)]

    def wait_lines(self, pattern, more_than=0, timeout=5.0):
        """The lines matching pattern once there are more than more_than of
        them, or those there are at timeout: a line reaches the reader
        thread a little after what it logs."""
        t0 = time.monotonic()
        while True:
            found = self.lines_matching(pattern)
            if len(found) > more_than or time.monotonic() - t0 > timeout:
                return found
            time.sleep(0.05)

    def log_tail(self, n=25):
        with self.lock:
            return '\n'.join('dnsgw: ' + l for l in self.lines[-n:])

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=None):
        """SIGTERM; returns the exit status (None if it had to be killed).
        Waits up to timeout s (default: the drain deadline + EXIT_GRACE) and
        records exit_status and stop_seconds. Marks the gateway as stopped
        on purpose (a case that stops it does not fail for that)."""
        self.stopped_on_purpose = True
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            self._reaped(self.proc.returncode)
            return self.proc.returncode
        if timeout is None:
            timeout = self.drain_ms() / 1000.0 + EXIT_GRACE
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            rc = None
        self.stop_seconds = time.monotonic() - t0
        self._reaped(rc)
        return rc

    def _reaped(self, rc):
        if self.exit_status is None:
            self.exit_status = rc
        # the whole of stderr (a LeakSanitizer report comes last)
        if getattr(self, 'reader', None) is not None:
            self.reader.join(5)

    def sanitizer_report(self, since=0):
        with self.lock:
            lines = self.lines[since:]
        return sanitizer_report(lines)

    def new_sanitizer_report(self):
        """A sanitizer report written since the last call, or ''."""
        if not self.alive() and getattr(self, 'reader', None) is not None:
            self.reader.join(3)
        with self.lock:
            n = len(self.lines)
        rep = self.sanitizer_report(self.san_checked)
        self.san_checked = n
        return rep

    def teardown_problems(self):
        """SIGTERM if still running; then what is wrong with how it ended:
        an exit status other than 0, no exit within the drain deadline, a
        sanitizer report. [] when all is well."""
        out = []
        name = 'dnsgw %s' % ' '.join(self.listen)
        if self.proc is None:
            return out
        if self.alive():
            deadline = self.drain_ms() / 1000.0
            rc = self.stop(deadline + EXIT_GRACE)
            if rc is None:
                out.append('%s: still running %.1fs after SIGTERM (drain_timeout_ms '
                           '%d): killed' % (name, deadline + EXIT_GRACE,
                                            self.drain_ms()))
            elif rc != 0:
                out.append('%s: exit status %s after SIGTERM (%.2fs)' %
                           (name, rc, self.stop_seconds))
        else:
            self._reaped(self.proc.returncode)
            rc = self.exit_status
            if not self.start_failed and not self.death_reported and rc != 0:
                out.append('%s: exit status %s' % (name, rc))
        rep = self.sanitizer_report()
        if rep:
            out.append('%s: sanitizer report on stderr: %s' %
                       (name, rep.splitlines()[0]))
        return out

    # -- gauges ----------------------------------------------------------

    def listen_ports(self):
        ports = set()
        for l in (self.config or {}).get('listen', self.listen):
            m = re.search(r':(\d+)(?:/|$)', l)
            if m:
                ports.add(int(m.group(1)))
        return ports

    def fd_table(self):
        """{fd: readlink target} of the process ({} once it is gone)."""
        out = {}
        d = '/proc/%d/fd' % self.proc.pid
        try:
            names = os.listdir(d)
        except OSError:
            return out
        for n in names:
            try:
                out[int(n)] = os.readlink(os.path.join(d, n))
            except OSError:
                pass
        return out

    def fd_count(self):
        return len(self.fd_table())

    def rss_kib(self):
        with open('/proc/%d/status' % self.proc.pid) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
        return 0

    def owned_sockets(self, proto='t'):
        """ss lines of every socket dnsgw owns (proto 't', 'u' or 'tu')."""
        out = subprocess.run(['ss', '-%sanpH' % proto], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, timeout=10).stdout
        tag = 'pid=%d,' % self.proc.pid
        return [l for l in out.decode(errors='replace').splitlines() if tag in l]

    def upstream_ports(self):
        """Ports of the configured upstreams (flags, config, extra args)."""
        urls = list(self.upstreams)
        urls += list(((self.config or {}).get('upstream') or {}).get('servers') or [])
        a = self.extra_args
        urls += [a[i + 1] for i in range(len(a) - 1) if a[i] == '--upstream']
        ports = set()
        for u in urls:
            m = re.search(r'://(?:\[[^\]]*\]|[^/:#]*):(\d+)', str(u))
            if m:
                ports.add(int(m.group(1)))
        return ports

    def pool_cap(self):
        """The most pooled upstream TCP/TLS connections dnsgw may keep open:
        upstream.max_conns_per_upstream (default 8) per upstream per worker."""
        up = (self.config or {}).get('upstream') or {}
        per = int(up.get('max_conns_per_upstream', 8))
        threads = int((self.config or {}).get('threads', self.threads) or 1)
        return per * max(1, len(self.upstream_ports())) * threads

    def pooled_fds(self):
        """fds of the TCP connections dnsgw holds to its upstreams: a
        connection pool may keep them open while idle (upstream
        idle_timeout_ms), so they are counted apart from the other fds."""
        ports = self.upstream_ports()
        out = set()
        for l in self.owned_sockets('t'):
            f = l.split()
            if len(f) < 5 or f[0] == 'LISTEN':
                continue
            try:
                rport = int(f[4].rsplit(':', 1)[1])
            except ValueError:
                continue
            m = re.search(r'pid=%d,fd=(\d+)' % self.proc.pid, l)
            if rport in ports and m:
                out.add(int(m.group(1)))
        return out

    def client_conns(self):
        """ss lines of the TCP connections (not LISTEN) dnsgw owns on its
        listening ports: the client side."""
        ports = self.listen_ports()
        out = []
        for l in self.owned_sockets('t'):
            f = l.split()
            if len(f) < 4 or f[0] == 'LISTEN':
                continue
            try:
                lport = int(f[3].rsplit(':', 1)[1])
            except ValueError:
                continue
            if lport in ports:
                out.append(l)
        return out

    def snapshot(self, settle=3.0):
        """Gauges when the gateway is quiet: waits up to settle s for the
        client-side connections to drain away first (a previous client's
        close may still be in flight)."""
        t0 = time.monotonic()
        while self.client_conns() and time.monotonic() - t0 < settle:
            time.sleep(0.05)
        pooled = self.pooled_fds()
        table = self.fd_table()
        return {'conns': len(self.client_conns()), 'fds': table, 'pooled': pooled,
                'nfds': len(set(table) - pooled), 'rss': self.rss_kib()}

    def expect_baseline(self, base, timeout=3.0, what=''):
        """Fails unless, within timeout s, the client-side TCP connections
        and the open fds are back to the numbers of snapshot base. Pooled
        upstream connections are not counted with the fds (they may stay
        open while idle) but may not exceed pool_cap(). Returns the seconds
        it took."""
        t0 = time.monotonic()
        cap = self.pool_cap()
        while True:
            conns = self.client_conns()
            table = self.fd_table()
            pooled = self.pooled_fds()
            nfds = len(set(table) - pooled)
            if len(conns) <= base['conns'] and nfds <= base['nfds'] and \
                    len(pooled) <= cap:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout or not self.alive():
                break
            time.sleep(0.05)
        extra = {fd: t for fd, t in table.items()
                 if base['fds'].get(fd) != t and fd not in pooled}
        details = ('client connections now %d, before %d:\n%s\n'
                   'fds (pooled upstream connections aside) now %d, before %d; '
                   'new or changed:\n%s\n'
                   'pooled upstream connections %d (cap %d)\n'
                   'sockets owned:\n%s\n%s' %
                   (len(conns), base['conns'], '\n'.join(conns[:20]),
                    nfds, base['nfds'],
                    '\n'.join('  %d -> %s' % kv for kv in sorted(extra.items())[:40]),
                    len(pooled), cap,
                    '\n'.join(self.owned_sockets('tu')[:40]), self.log_tail(10)))
        check(False, '%sgauges not back to baseline %.1fs later: %d client '
              'connection(s) (before %d), %d fds (before %d), %d pooled upstream '
              'connections (cap %d)' %
              (what + ': ' if what else '', timeout, len(conns), base['conns'],
               nfds, base['nfds'], len(pooled), cap), details)

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
        """Every gateway started so far (fixtures or not), in start order."""
        out = list(_gateways)
        for o in self.fixtures.values():
            if isinstance(o, Gateway) and o not in out:
                out.append(o)
        return out

    def _teardown_gateways(self):
        """SIGTERM to every gateway still running; each must exit 0 within
        its drain deadline, and no gateway may have written a sanitizer
        report. Returns (ok, why, details)."""
        problems, details = [], ''
        for g in self.gateways():
            p = g.teardown_problems()
            if p:
                problems += p
                rep = g.sanitizer_report()
                details += '\n'.join(p) + '\n' + (rep or g.log_tail(25)) + '\n'
        if not problems:
            return True, '', ''
        return False, '; '.join(problems), details

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
        def report(name, ok, why, details):
            nonlocal passed, failed
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

        try:
            for name, fn, timeout in cases:
                report(name, *self._run_case(name, fn, timeout))
            if self.gateways():
                report('teardown_gateways_exit_cleanly', *self._teardown_gateways())
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
            if g.proc is not None and not g.alive() and not g.start_failed and \
                    not getattr(g, 'stopped_on_purpose', False):
                if ok or 'exited' not in why:
                    ok = False
                    why = (why + '; ' if why else '') + 'dnsgw exited with %s' % g.proc.returncode
                    details = (details + '\n' if details else '') + g.log_tail(40)
                g.stopped_on_purpose = True  # report once
                g.death_reported = True
        # and so does a sanitizer report written during the case
        for g in self.gateways():
            rep = g.new_sanitizer_report()
            if rep:
                ok = False
                why = (why + '; ' if why else '') + 'sanitizer report on dnsgw stderr: ' + \
                    rep.splitlines()[0]
                details = (details + '\n' if details else '') + rep
        if not ok:
            for g in self.gateways():
                if g.alive():
                    details += '\n' + g.log_tail(15)
        if VERBOSE:
            print('# %s took %.2fs' % (name, time.monotonic() - t0))
        return ok, why, details
