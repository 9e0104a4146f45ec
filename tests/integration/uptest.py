"""Fault-injecting upstreams for tests/integration/test_upstream.py.

FaultServer: a DNS server on 127.0.0.1 (UDP and TCP on one port, optionally
TLS on the TCP side) whose behaviour is chosen per instance:

  answer          every query answered (A 192.0.2.7), pipelined; `delay`
                  seconds before each answer (answers then come out of order)
  close_pending   the first connection is closed after `n` queries arrived,
                  none answered; later connections answer
  wrong_id        answers carry another ID
  wrong_question  answers carry the right ID and another name
  drip            the answer is sent one byte per second
  silent          accepts and reads, never answers
  tc              UDP answers have TC=1 and no records; TCP answers fully

Counters (accepts, open connections, queries per transport) are read by the
tests to check pooling. Certificates (CA, good, wrong name, expired) come
from make_certs() with the Python `cryptography` package.
"""

import datetime
import os
import socket
import ssl
import struct
import subprocess
import threading
import time

import dnswire as W
import gwtest as G


class FaultServer:
    def __init__(self, mode='answer', delay=0.0, n=3, tls=None):
        self.mode, self.delay, self.n = mode, delay, n
        self.tls = tls  # (cert, key) or None
        self.lock = threading.Lock()
        self.accepts = 0
        self.open = 0
        self.max_open = 0
        self.udp_queries = 0
        self.tcp_queries = 0
        self.closed = 0
        self.stopping = False
        for _ in range(50):
            self.port = G.free_port()
            try:
                self.t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self.t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self.t.bind(('127.0.0.1', self.port))
                self.u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self.u.bind(('127.0.0.1', self.port))
                break
            except OSError:
                self.t.close()
        self.t.listen(128)
        self.ctx = None
        if tls:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(*tls)
        for fn in (self._accept_loop, self._udp_loop):
            threading.Thread(target=fn, daemon=True).start()

    def stop(self):
        self.stopping = True
        for s in (self.t, self.u):
            try:
                s.close()
            except OSError:
                pass

    def answer(self, q):
        m = W.parse(q)
        if self.mode == 'wrong_question':
            other = 'zz' + m.qname
            return W.build_response(m, question=(other, 'A'), answers=[
                W.rr(other, 'A', W.a_rdata('192.0.2.66'))])
        r = W.build_response(m, answers=[W.rr(m.qname, 'A',
                                              W.a_rdata('192.0.2.7'))])
        if self.mode == 'wrong_id':
            r = struct.pack('!H', (m.id + 1) & 0xffff) + r[2:]
        return r

    def _udp_loop(self):
        while not self.stopping:
            try:
                q, peer = self.u.recvfrom(65535)
            except OSError:
                return
            with self.lock:
                self.udp_queries += 1
            if self.mode == 'tc':
                m = W.parse(q)
                r = W.build_response(m, tc=True)
            elif self.mode in ('silent', 'drip', 'close_pending'):
                continue
            else:
                r = self.answer(q)
            try:
                self.u.sendto(r, peer)
            except OSError:
                pass

    def _accept_loop(self):
        while not self.stopping:
            try:
                c, _ = self.t.accept()
            except OSError:
                return
            with self.lock:
                self.accepts += 1
                idx = self.accepts
            threading.Thread(target=self._conn, args=(c, idx),
                             daemon=True).start()

    def _conn(self, c, idx):
        if self.ctx:
            try:
                c.settimeout(5)
                c = self.ctx.wrap_socket(c, server_side=True)
                c.settimeout(None)
            except (ssl.SSLError, OSError):
                c.close()
                return
        with self.lock:
            self.open += 1
            self.max_open = max(self.max_open, self.open)
        wlock = threading.Lock()
        buf = b''
        seen = 0

        def send(data):
            with wlock:
                try:
                    c.sendall(data)
                except OSError:
                    pass

        try:
            while True:
                try:
                    d = c.recv(65535)
                except OSError:
                    break
                if not d:
                    break
                buf += d
                while len(buf) >= 2 and len(buf) >= 2 + struct.unpack('!H', buf[:2])[0]:
                    ln = struct.unpack('!H', buf[:2])[0]
                    q, buf = buf[2:2 + ln], buf[2 + ln:]
                    seen += 1
                    with self.lock:
                        self.tcp_queries += 1
                    if self.mode == 'close_pending' and idx == 1:
                        if seen >= self.n:
                            raise EOFError
                        continue
                    if self.mode == 'silent':
                        continue
                    r = W.frame(self.answer(q))
                    if self.mode == 'drip':
                        def drip(r=r):
                            for i in range(len(r)):
                                if self.stopping:
                                    return
                                send(r[i:i + 1])
                                time.sleep(1)
                        threading.Thread(target=drip, daemon=True).start()
                    elif self.delay:
                        threading.Timer(self.delay, send, args=(r,)).start()
                    else:
                        send(r)
        except EOFError:
            pass
        finally:
            with self.lock:
                self.open -= 1
                self.closed += 1
            try:
                c.close()
            except OSError:
                pass


# ---------------------------------------------------------------------------
# certificates

def make_certs(d):
    """A CA and three leaves signed by it: good (dns.test, SAN dns.test),
    wrong (other.test) and expired (dns.test, ended yesterday). Returns a
    dict of paths: ca, good, good_key, wrong, wrong_key, expired,
    expired_key, and the SPKI pin of the good leaf (pin)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import base64
    import hashlib

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'test CA')])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=10))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
          .sign(ca_key, hashes.SHA256()))
    out = {'ca': os.path.join(d, 'ca.pem')}
    with open(out['ca'], 'wb') as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))

    def leaf(tag, name, nb, na, serial):
        k = ec.generate_private_key(ec.SECP256R1())
        c = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
             .issuer_name(ca_name).public_key(k.public_key()).serial_number(serial)
             .not_valid_before(nb).not_valid_after(na)
             .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
             .sign(ca_key, hashes.SHA256()))
        out[tag] = os.path.join(d, tag + '.pem')
        out[tag + '_key'] = os.path.join(d, tag + '.key')
        with open(out[tag], 'wb') as f:
            f.write(c.public_bytes(serialization.Encoding.PEM))
        with open(out[tag + '_key'], 'wb') as f:
            f.write(k.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
        spki = k.public_key().public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(hashlib.sha256(spki).digest()).decode()

    day = datetime.timedelta(days=1)
    out['pin'] = leaf('good', 'dns.test', now - day, now + 5 * day, 2)
    leaf('wrong', 'other.test', now - day, now + 5 * day, 3)
    leaf('expired', 'dns.test', now - 10 * day, now - day, 4)
    return out


# ---------------------------------------------------------------------------
# clients

def ask(port, name, qtype='A', timeout=6.0):
    """One UDP query to the gateway: (parsed answer or None, seconds)."""
    t0 = time.monotonic()
    try:
        m = G.udp_query(port, W.build_query(name, qtype), timeout=timeout)
    except socket.timeout:
        return None, time.monotonic() - t0
    return m, time.monotonic() - t0


def ask_many(port, names, timeout=8.0, burst=50):
    """Sends every query from one UDP socket, `burst` at a time 10 ms apart
    (a slow sanitizer build must not lose datagrams in its socket buffer);
    returns {name: rcode name} for the answered ones."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    s.settimeout(0.5)
    want = {}
    for i, n in enumerate(names):
        q = W.build_query(n, 'A', qid=i & 0xffff)
        want[i & 0xffff] = n
        s.sendto(q, ('127.0.0.1', port))
        if burst and i % burst == burst - 1:
            time.sleep(0.01)
    got = {}
    t0 = time.monotonic()
    while len(got) < len(names) and time.monotonic() - t0 < timeout:
        try:
            raw, _ = s.recvfrom(65535)
        except socket.timeout:
            continue
        m = W.parse(raw)
        if m.id in want and m.qname.rstrip('.').lower() == want[m.id].rstrip('.').lower():
            got[want[m.id]] = m.rcode_name
    s.close()
    return got


def ede(m):
    """The (code, text) of the Extended DNS Error in m, or None."""
    o = m.option(W.OPT_EDE) if m is not None else None
    if not o:
        return None
    return struct.unpack('!H', o[:2])[0], o[2:].decode(errors='replace')


def log_has(g, needle, timeout=3.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        with g.lock:
            if any(needle in l for l in g.lines):
                return True
        time.sleep(0.05)
    return False


def upstream_sockets(g, port):
    """dnsgw's TCP sockets to 127.0.0.1:port (established ones)."""
    r = G.run(['ss', '-tanpH', 'dport = :%d' % port], timeout=10)
    return [l for l in r.out.splitlines() if 'pid=%d,' % g.proc.pid in l
            and l.startswith('ESTAB')]


class UnboundTLS:
    """unbound with local data, on UDP+TCP `port` and DoT `tls_port`."""

    def __init__(self, cert, key):
        self.dir = G.tmpdir('dnsgw-unbound-tls-')
        self.port, self.tls_port = G.free_port(), G.free_port()
        self.conf = os.path.join(self.dir, 'unbound.conf')
        self.log = os.path.join(self.dir, 'unbound.log')
        data = '\n'.join('    local-data: "%s"' % d.replace('"', '\\"')
                         for d in G.Unbound.LOCAL_DATA)
        with open(self.conf, 'w') as f:
            f.write('''server:
    interface: 127.0.0.1@{port}
    interface: 127.0.0.1@{tls}
    tls-port: {tls}
    tls-service-key: "{key}"
    tls-service-pem: "{cert}"
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
    incoming-num-tcp: 256
    local-zone: "." refuse
    local-zone: "example.test." static
{data}
remote-control:
    control-enable: no
'''.format(port=self.port, tls=self.tls_port, dir=self.dir, data=data,
           key=key, cert=cert))
        self.proc = None

    def start(self):
        self.logf = open(self.log, 'w')
        self.proc = G.spawn(['unbound', '-d', '-c', self.conf],
                            stdout=self.logf, stderr=subprocess.STDOUT)
        G._wait_udp_answer(self.port, 'www.example.test.',
                           time.monotonic() + 10, self.proc, 'unbound')
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
