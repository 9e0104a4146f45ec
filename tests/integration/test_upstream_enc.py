#!/usr/bin/env python3
"""Encrypted upstreams: https:// (DoH over HTTP/2) and quic:// (DoQ), and
host names in upstream URLs resolved through a bootstrap resolver.

Gateway B (the "upstream") serves dot://, doh:// and doq:// on loopback and
forwards to unbound over UDP; gateway A forwards to B over tls://, https://
or quic://, verifying B's certificate against a CA generated here. Every
front-end of A is asked through every upstream protocol.

Run: python3 tests/integration/test_upstream_enc.py --binary build/dnsgw
"""

import datetime
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gwtest as G  # noqa: E402
import uptest as U  # noqa: E402
import doqtest as Q  # noqa: E402

suite = G.Suite('encrypted upstreams (https, quic, bootstrap)')
check = G.check

WWW = '192.0.2.10'  # www.example.test in gwtest.Unbound
HOSTNAME = 'doh.example.test'


def make_certs(d):
    """A CA and leaves signed by it: good (SAN dns.test and doh.example.test),
    wrong (other.test), expired (dns.test, ended yesterday)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    day = datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'enc test CA')])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - day).not_valid_after(now + 10 * day)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
          .sign(ca_key, hashes.SHA256()))
    out = {'ca': os.path.join(d, 'ca.pem')}
    with open(out['ca'], 'wb') as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))

    def leaf(tag, names, nb, na, serial):
        k = ec.generate_private_key(ec.SECP256R1())
        c = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
             .issuer_name(ca_name).public_key(k.public_key()).serial_number(serial)
             .not_valid_before(nb).not_valid_after(na)
             .add_extension(x509.SubjectAlternativeName(
                 [x509.DNSName(n) for n in names]), False)
             .sign(ca_key, hashes.SHA256()))
        out[tag] = os.path.join(d, tag + '.pem')
        out[tag + '_key'] = os.path.join(d, tag + '.key')
        with open(out[tag], 'wb') as f:
            f.write(c.public_bytes(serialization.Encoding.PEM))
        with open(out[tag + '_key'], 'wb') as f:
            f.write(k.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
        os.chmod(out[tag + '_key'], 0o600)

    leaf('good', ['dns.test', HOSTNAME], now - day, now + 5 * day, 2)
    leaf('wrong', ['other.test'], now - day, now + 5 * day, 3)
    # dnsgw refuses to serve an expired certificate, so the upstream gets
    # one that runs out a few seconds after it started
    out['short_ends'] = time.time() + 8
    leaf('short', ['dns.test'], now - day,
         now + datetime.timedelta(seconds=8), 5)
    return out


def certs():
    return suite.fixture('certs', lambda: make_certs(G.tmpdir('dnsgw-enccerts-')))


def unbound():
    # doh.example.test with a 2 s TTL: re-resolution is observable
    return suite.fixture('unbound', lambda: G.Unbound(
        extra_local_data=['%s. 2 IN A 127.0.0.1' % HOSTNAME]).start())


class Upstream:
    """Gateway B: dot, doh and doq listeners, forwarding to unbound."""

    def __init__(self, cert='good'):
        c = certs()
        ub = unbound()
        self.dot, self.doh, self.doq = G.free_port(), G.free_port(), G.free_port()
        conf = {'listen': ['dot://127.0.0.1:%d' % self.dot,
                           'doh://127.0.0.1:%d/dns-query' % self.doh,
                           'doq://127.0.0.1:%d' % self.doq],
                'log': {'level': 'info'}}
        self.g = G.Gateway(suite.binary, ['udp://127.0.0.1:%d' % ub.port],
                           dot=False, dns=False, cert=c[cert],
                           key=c[cert + '_key'], config=conf)
        self.g.start()
        # doq is UDP: wait until it answers rather than trusting msg=ready
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5:
            r = Q.doq_client(suite.binary, self.doq, timeout=2,
                             extra=['-q', 'www.example.test'])
            if r[0].get('answers') == 1:
                break
            time.sleep(0.1)

    def url(self, proto, name='dns.test', host='127.0.0.1'):
        tail = '#' + name if name else ''
        if proto == 'tls':
            return 'tls://%s:%d%s' % (host, self.dot, tail)
        if proto == 'https':
            return 'https://%s:%d/dns-query%s' % (host, self.doh, tail)
        return 'quic://%s:%d%s' % (host, self.doq, tail)

    def kill(self):
        self.g.stopped_on_purpose = True
        self.g.death_reported = True  # SIGKILL on purpose: no exit status
        self.g.proc.kill()
        self.g.proc.wait(5)

    def stop(self):
        if self.g.alive():
            rc = self.g.stop()
            check(rc == 0, 'upstream gateway exit status %s' % rc,
                  self.g.log_tail())


def upstream_b():
    return suite.fixture('B', Upstream)


def gateway(upstreams, up=None, level='info', doh=False, doq=False, **kw):
    """Gateway A: udp+tcp (and dot) front-ends, optionally doh and doq."""
    conf = {'upstream': dict(up or {}), 'log': {'level': level}}
    conf['upstream'].setdefault('ca_file', certs()['ca'])
    conf['upstream'].setdefault('timeout_ms', 1000)
    conf['upstream'].setdefault('attempts', 1)
    g = G.Gateway(suite.binary, upstreams, dot=True, dns=True, config=conf,
                  cert=certs()['good'], key=certs()['good_key'], **kw)
    if doh or doq:
        g.doh_port = G.free_port()
        g.doq_port = G.free_port()
        listen = list(g.listen)
        if doh:
            listen.append('doh://127.0.0.1:%d/dns-query' % g.doh_port)
        if doq:
            listen.append('doq://127.0.0.1:%d' % g.doq_port)
        conf['listen'] = listen
    return g.start()


def stop_gw(g):
    rc = g.stop()
    check(rc == 0, 'gateway exit status %s' % rc, g.log_tail())


def expect_www(g, how='udp', name=None):
    """Asks through front-end how: www.example.test (its A record), or the
    uncached name (NXDOMAIN: the answer came through the upstream)."""
    q = name or 'www.example.test'
    want = ('NXDOMAIN', []) if name else ('NOERROR', [WWW])
    if how == 'udp':
        r = G.dig(g.dns, q)
    elif how == 'tcp':
        r = G.dig(g.dns, q, tcp=True)
    elif how == 'dot':
        r = G.kdig(g.dot, q)
    elif how == 'doh':
        r = G.run(['kdig', '@127.0.0.1', '-p', str(g.doh_port),
                   '+https=/dns-query', '+timeout=3', '+retry=0', q, 'A'],
                  timeout=20)
    elif how == 'doq':
        out = Q.doq_client(suite.binary, g.doq_port, timeout=5,
                           extra=['-q', q])
        check(out[0].get('answers') == 1 and out[0].get('bad_answers') == 0,
              'doq front-end: %s' % out, g.log_tail())
        # doq_client does not print the answer: its content is checked
        # over UDP (a cache hit of the same answer at worst)
        r = G.dig(g.dns, q)
    m = re.search(r'status: ([A-Z]+)', r.out)
    status = m.group(1) if m else None
    check((status, r.answers('A')) == want,
          '%s front-end: status %s answers %s' % (how, status, r.answers('A')),
          r.describe() + '\n' + g.log_tail())
    return r


_seq = [0]


def fresh():
    """A name asked once in the run (never in any cache)."""
    _seq[0] += 1
    return 'f%d-%d.example.test' % (os.getpid(), _seq[0])


def expect_nx(g, name=None):
    """An uncached question answered through the upstream (NXDOMAIN)."""
    m, t = U.ask(g.dns, name or fresh())
    check(m is not None and m.rcode_name == 'NXDOMAIN',
          'rcode %s (%.1fs)' % (m.rcode_name if m else 'timeout', t),
          g.log_tail())


def expect_servfail(g, ede_code=None, within=None):
    m, t = U.ask(g.dns, fresh())
    check(m is not None, 'client timed out after %.1fs' % t, g.log_tail())
    check(m.rcode_name == 'SERVFAIL', 'rcode %s' % m.rcode_name, g.log_tail())
    if ede_code is not None:
        e = U.ede(m)
        check(e is not None and e[0] == ede_code, 'EDE %s, want %s' % (e, ede_code))
    if within is not None:
        check(t <= within, 'SERVFAIL after %.2fs, want <= %.1fs' % (t, within))
    return m, t


def udp_sockets(g, port):
    """dnsgw's UDP sockets connected to 127.0.0.1:port."""
    r = G.run(['ss', '-uanpH', 'dport = :%d' % port], timeout=10)
    return [l for l in r.out.splitlines() if 'pid=%d,' % g.proc.pid in l]


# --- https:// ----------------------------------------------------------------

@suite.case
def test_https_upstream_answers_over_one_connection(s):
    b = upstream_b()
    g = gateway([b.url('https')], level='debug')
    for _ in range(3):
        expect_www(g, 'udp')
    expect_www(g, 'dot')
    names = ['h%d.example.test' % i for i in range(50)]
    got = U.ask_many(g.dns, names)
    check(len(got) == 50 and set(got.values()) == {'NXDOMAIN'},
          '50 concurrent queries over DoH: %s' % got, g.log_tail())
    conns = U.upstream_sockets(g, b.doh)
    check(len(conns) == 1, '%d connections to the DoH upstream, want 1 (pooled '
          'HTTP/2 streams)' % len(conns), '\n'.join(conns))
    check(U.log_has(g, 'detail=h2'), 'no "connection open detail=h2"',
          g.log_tail())
    stop_gw(g)


@suite.case
def test_https_wrong_name_refused(s):
    b = upstream_b()
    g = gateway([b.url('https', name='other.test')])
    expect_servfail(g)
    check(U.log_has(g, 'certificate name mismatch'),
          'no "certificate name mismatch" in the log', g.log_tail())
    stop_gw(g)


@suite.case
def test_https_untrusted_ca_refused(s):
    b = upstream_b()
    other_ca, _ = G.gen_cert(G.tmpdir('dnsgw-otherca-'), 'other CA')
    g = gateway([b.url('https')], up={'ca_file': other_ca})
    expect_servfail(g)
    check(U.log_has(g, 'upstream tls handshake failed'),
          'no handshake failure in the log', g.log_tail())
    stop_gw(g)


@suite.case
def test_https_without_h2_alpn_refused(s):
    """A TLS server that does not speak HTTP/2 (no ALPN h2): refused after
    the handshake, before any query is written."""
    c = certs()
    f = U.FaultServer('answer', tls=(c['good'], c['good_key']))
    try:
        g = gateway(['https://127.0.0.1:%d/dns-query#dns.test' % f.port])
        expect_servfail(g)
        check(U.log_has(g, 'ALPN h2 not agreed'),
              'no "ALPN h2 not agreed" in the log', g.log_tail())
        check(f.tcp_queries == 0, 'a query was written to a non-h2 server')
        stop_gw(g)
    finally:
        f.stop()


@suite.case
def test_expired_certificate_refused_https_and_quic(s):
    bx = Upstream(cert='short')
    try:
        time.sleep(max(0, certs()['short_ends'] - time.time() + 1))
        for proto in ('https', 'quic'):
            g = gateway([bx.url(proto)])
            expect_servfail(g)
            check(U.log_has(g, 'certificate expired'),
                  '%s: no "certificate expired" in the log' % proto,
                  g.log_tail())
            stop_gw(g)
    finally:
        bx.stop()


@suite.case
def test_https_goaway_from_idle_upstream_then_new_connection(s):
    """B closes idle DoH connections with GOAWAY (limits.doh_idle_timeout_ms);
    A must not lose the next query: it opens a new connection."""
    c = certs()
    ub = unbound()
    port = G.free_port()
    b = G.Gateway(suite.binary, ['udp://127.0.0.1:%d' % ub.port], dot=False,
                  dns=False, cert=c['good'], key=c['good_key'],
                  config={'listen': ['doh://127.0.0.1:%d/dns-query' % port],
                          'limits': {'doh_idle_timeout_ms': 300}})
    b.start()
    g = gateway(['https://127.0.0.1:%d/dns-query#dns.test' % port],
                level='debug')
    for _ in range(3):
        expect_nx(g)
        time.sleep(0.8)  # B's GOAWAY and close in between
    opened = [l for l in g.lines if 'connection open' in l and 'h2' in l]
    check(len(opened) >= 3, 'connections opened: %d, want one per query '
          'after each GOAWAY' % len(opened), g.log_tail())
    check(not U.log_has(g, 'attempt failed', timeout=0.1),
          'an attempt failed across a GOAWAY', g.log_tail())
    check(U.log_has(g, 'detail="h2 tls resumed"', timeout=0.1),
          'reconnects did not resume the TLS session', g.log_tail())
    stop_gw(g)
    rc = b.stop()
    check(rc == 0, 'upstream exit status %s' % rc, b.log_tail())


@suite.case
def test_https_draining_upstream_queries_move_on(s):
    """B1 drains (SIGTERM: GOAWAY, listener closed) with slow queries in
    flight: those are answered, and later ones go to B2 - nothing lost."""
    c = certs()
    slow = U.FaultServer('answer', delay=0.6)
    p1 = G.free_port()
    b1 = G.Gateway(suite.binary, ['udp://127.0.0.1:%d' % slow.port],
                   dot=False, dns=False, cert=c['good'], key=c['good_key'],
                   config={'listen': ['doh://127.0.0.1:%d/dns-query' % p1],
                           'limits': {'drain_timeout_ms': 3000}})
    b1.start()
    b = upstream_b()
    try:
        g = gateway(['https://127.0.0.1:%d/dns-query#dns.test' % p1,
                     b.url('https')], up={'attempts': 2, 'timeout_ms': 2000})
        names = ['d%d.example.test' % i for i in range(20)]
        res = {}

        def burst(tag, ns):
            res[tag] = U.ask_many(g.dns, ns, timeout=6)
        import threading
        t = threading.Thread(target=burst, args=('first', names))
        t.start()
        time.sleep(0.2)
        b1.proc.send_signal(15)
        time.sleep(0.1)
        burst('later', ['l%d.example.test' % i for i in range(20)])
        t.join()
        first, later = res['first'], res['later']
        check(len(first) == 20 and 'SERVFAIL' not in first.values(),
              'in flight at the GOAWAY: %s' % first, g.log_tail())
        check(len(later) == 20 and 'SERVFAIL' not in later.values(),
              'sent after the GOAWAY: %s' % later, g.log_tail())
        stop_gw(g)
        b1.proc.wait(5)
        b1.stopped_on_purpose = True
        check(b1.proc.returncode == 0, 'draining upstream exit status %s' %
              b1.proc.returncode, b1.log_tail())
    finally:
        slow.stop()


class GoawayServer:
    """A scripted HTTP/2 (TLS, ALPN h2) DoH server: once two requests are in
    (or 0.5 s after the first), it sends GOAWAY with the first stream as the
    last one it will process, then answers that stream (NXDOMAIN). The
    other stream is refused by the GOAWAY (RFC 9113 6.8)."""

    def __init__(self, cert, key):
        import socket
        import ssl
        import threading
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.ctx.set_alpn_protocols(['h2'])
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.streams = []   # stream ids whose request arrived
        self.errors = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        try:
            raw, _ = self.sock.accept()
            c = self.ctx.wrap_socket(raw, server_side=True)
            c.settimeout(0.05)
            self._conn(c)
        except Exception as e:  # reported by the case
            self.errors.append(repr(e))

    def _conn(self, c):
        import struct
        import socket
        from dohtest import frame, hpack_block
        buf = b''
        bodies = {}
        done = []
        c.sendall(frame(4, 0, 0))  # our SETTINGS
        t_first = None
        sent_goaway = False
        t_end = time.monotonic() + 10
        while time.monotonic() < t_end:
            try:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            except (socket.timeout, TimeoutError):
                pass
            if buf.startswith(b'PRI * HTTP/2.0'):
                buf = buf[24:]
            while len(buf) >= 9:
                ln = struct.unpack('!I', b'\0' + buf[:3])[0]
                if len(buf) < 9 + ln:
                    break
                ftype, flags = buf[3], buf[4]
                sid = struct.unpack('!I', buf[5:9])[0] & 0x7fffffff
                payload = buf[9:9 + ln]
                buf = buf[9 + ln:]
                if ftype == 4 and not flags & 1:
                    c.sendall(frame(4, 1, 0))  # SETTINGS ACK
                if ftype == 0:
                    bodies[sid] = bodies.get(sid, b'') + payload
                if ftype in (0, 1) and flags & 1:
                    done.append(sid)
                    self.streams.append(sid)
                    if t_first is None:
                        t_first = time.monotonic()
            if not sent_goaway and done and (
                    len(done) >= 2 or time.monotonic() - t_first > 0.5):
                first = done[0]
                c.sendall(frame(7, 0, 0, struct.pack('!II', first, 0)))
                q = bodies.get(first, b'')
                ans = q[:2] + b'\x81\x83' + q[4:]  # QR RD RA, NXDOMAIN
                hdr = hpack_block([(':status', '200'),
                                   ('content-type', 'application/dns-message'),
                                   ('content-length', str(len(ans)))])
                c.sendall(frame(1, 4, first, hdr) + frame(0, 1, first, ans))
                sent_goaway = True

    def stop(self):
        self.sock.close()


@suite.case
def test_https_goaway_refused_stream_retried_elsewhere(s):
    c = certs()
    srv = GoawayServer(c['good'], c['good_key'])
    b = upstream_b()
    try:
        g = gateway(['https://127.0.0.1:%d/dns-query#dns.test' % srv.port,
                     b.url('https')], up={'attempts': 2, 'timeout_ms': 3000},
                    level='debug')
        got = U.ask_many(g.dns, [fresh(), fresh()], burst=0)
        check(not srv.errors, 'server: %s' % srv.errors)
        check(len(srv.streams) == 2,
              'the scripted server saw streams %s, want 2 on one '
              'connection' % srv.streams, g.log_tail())
        check(sorted(got.values()) == ['NXDOMAIN', 'NXDOMAIN'],
              'answers %s' % got, g.log_tail())
        check(U.log_has(g, 'connection lost, resending', timeout=0.5),
              'the refused stream was not re-sent', g.log_tail())
        check(U.log_has(g, 'attempt sent" upstream=%s' % b.url('https'),
                        timeout=0.1),
              'the refused query did not go to the other upstream',
              g.log_tail())
        stop_gw(g)
    finally:
        srv.stop()


# --- quic:// -----------------------------------------------------------------

@suite.case
def test_quic_upstream_answers_over_one_connection(s):
    b = upstream_b()
    g = gateway([b.url('quic')], level='debug')
    for _ in range(3):
        expect_www(g, 'udp')
    expect_www(g, 'tcp')
    socks = udp_sockets(g, b.doq)
    check(len(socks) == 1, '%d QUIC sockets to the upstream, want 1 (one '
          'connection, a stream per query)' % len(socks), '\n'.join(socks))
    # B allows 16 concurrent streams per connection (doq.max_streams):
    # 50 at once need a few connections, never one per query
    names = ['q%d.example.test' % i for i in range(50)]
    got = U.ask_many(g.dns, names)
    check(len(got) == 50 and set(got.values()) == {'NXDOMAIN'},
          '50 concurrent queries over DoQ: %s' % got, g.log_tail())
    socks = udp_sockets(g, b.doq)
    check(1 <= len(socks) <= 4, '%d QUIC connections for 50 queries with 16 '
          'streams each' % len(socks), '\n'.join(socks))
    check(U.log_has(g, 'detail=quic'), 'no "connection open detail=quic"',
          g.log_tail())
    stop_gw(g)


@suite.case
def test_quic_wrong_name_refused(s):
    b = upstream_b()
    g = gateway([b.url('quic', name='other.test')])
    expect_servfail(g)
    check(U.log_has(g, 'upstream quic handshake failed'),
          'no "upstream quic handshake failed" in the log', g.log_tail())
    check(U.log_has(g, 'certificate name mismatch'),
          'no "certificate name mismatch" in the log', g.log_tail())
    stop_gw(g)


@suite.case
def test_quic_idle_connection_closed(s):
    b = upstream_b()
    g = gateway([b.url('quic')], up={'idle_timeout_ms': 300}, level='debug')
    expect_www(g)
    check(U.log_has(g, 'connection idle', timeout=3),
          'QUIC connection not closed when idle', g.log_tail())
    time.sleep(0.2)
    check(udp_sockets(g, b.doq) == [], 'QUIC socket still open after idle close')
    expect_nx(g)  # and a new one comes up for the next query
    check(len(udp_sockets(g, b.doq)) == 1, 'no new QUIC connection')
    check(U.log_has(g, 'detail="quic resumed"', timeout=0.1),
          'the new QUIC connection did not resume the TLS session',
          g.log_tail())
    stop_gw(g)


# --- upstream gone -------------------------------------------------------------

@suite.case
def test_killed_upstream_servfail_with_ede_once_down(s):
    for proto in ('https', 'quic'):
        bk = Upstream()
        g = gateway([bk.url(proto)], up={'timeout_ms': 500})
        expect_www(g)
        bk.kill()
        # failures mark it down (3 in a row) ...
        for _ in range(4):
            m, t = U.ask(g.dns, fresh(), timeout=4)
            check(m is not None and m.rcode_name == 'SERVFAIL',
                  '%s: %s after the upstream died' %
                  (proto, m.rcode_name if m else 'timeout'), g.log_tail())
            if U.log_has(g, 'upstream down', timeout=0.3):
                break
        check(U.log_has(g, 'upstream down', timeout=2),
              '%s: upstream never marked down' % proto, g.log_tail())
        # ... then SERVFAIL with EDE 22 at once, not a client timeout
        expect_servfail(g, ede_code=22, within=0.3)
        stop_gw(g)


# --- bootstrap ---------------------------------------------------------------

@suite.case
def test_hostname_url_resolved_through_bootstrap(s):
    b = upstream_b()
    ub = unbound()
    g = gateway([b.url('https', name=None, host=HOSTNAME)],
                up={'bootstrap': '127.0.0.1:%d' % ub.port}, level='debug')
    expect_www(g)
    check(U.log_has(g, 'detail=h2'), 'no DoH connection to ' + HOSTNAME,
          g.log_tail())
    # TTL 2 s: asked again from the loop, without blocking it
    check(U.log_has(g, 'bootstrap resolved', timeout=5),
          'no re-resolution after the TTL', g.log_tail())
    expect_nx(g)
    stop_gw(g)
    # tls://NAME too, name verified against the certificate; two workers,
    # the second on the first one's address (gw_up_pool_seed): queries
    # from new sockets reach both
    g = gateway([b.url('tls', name=None, host=HOSTNAME)],
                up={'bootstrap': '127.0.0.1:%d' % ub.port}, threads=2)
    for _ in range(8):
        expect_www(g, name=fresh())
    stop_gw(g)


@suite.case
def test_hostname_unresolvable_refuses_start(s):
    b = upstream_b()
    ub = unbound()
    g = G.Gateway(suite.binary, ['https://nx.example.test:%d/dns-query' % b.doh],
                  dot=False, dns=True, extra_args=[
                      '--bootstrap', '127.0.0.1:%d' % ub.port,
                      '--ca-file', certs()['ca']])
    try:
        g.start()
        started = True
    except RuntimeError:
        started = False
    check(not started, 'started with an unresolvable upstream host')
    check(any('cannot resolve' in l for l in g.lines),
          'no "cannot resolve" message', g.log_tail())


# --- every protocol behind every front-end ----------------------------------------

@suite.case
def test_every_upstream_behind_every_frontend(s):
    b = upstream_b()
    ub = unbound()
    ups = {
        'udp': 'udp://127.0.0.1:%d' % ub.port,
        'tcp': 'tcp://127.0.0.1:%d' % ub.port,
        'tls': b.url('tls'),
        'https': b.url('https'),
        'quic': b.url('quic'),
    }
    for name, u in ups.items():
        g = gateway([u], doh=True, doq=True)
        expect_www(g, 'udp')
        for fe in ('udp', 'tcp', 'dot', 'doh', 'doq'):
            try:
                expect_www(g, fe, name=fresh())
            except G.TestFailure as e:
                raise G.TestFailure('upstream %s, front-end %s: %s' %
                                    (name, fe, e), e.details)
        stop_gw(g)


@suite.case
def test_dnsperf_over_each_upstream_protocol(s):
    """Not a bench with a bar: prints qps through a DoT front-end per
    upstream protocol (every name asked once: no cache hits), and checks
    that nothing is lost."""
    b = upstream_b()
    ub = unbound()
    ups = [('udp', 'udp://127.0.0.1:%d' % ub.port),
           ('tcp', 'tcp://127.0.0.1:%d' % ub.port),
           ('tls', b.url('tls')), ('https', b.url('https')),
           ('quic', b.url('quic'))]
    qf = os.path.join(G.tmpdir('dnsgw-encperf-'), 'q.txt')
    with open(qf, 'w') as f:
        for i in range(300000):
            f.write('p%d.example.test A\n' % i)
    res = []
    for name, u in ups:
        g = gateway([u], up={'timeout_ms': 3000})
        r = G.run(['dnsperf', '-m', 'dot', '-s', '127.0.0.1', '-p', str(g.dot),
                   '-d', qf, '-l', '3', '-c', '4', '-q', '100'], timeout=60)
        check(r.rc == 0, 'dnsperf failed', r.describe())
        qps = lost = None
        for l in r.out.splitlines():
            if 'Queries per second' in l:
                qps = float(l.split()[-1])
            if 'Queries lost' in l:
                lost = int(l.split()[2])
        check(qps and lost == 0, '%s: qps %s lost %s' % (name, qps, lost),
              r.describe())
        res.append('%s=%.0f' % (name, qps))
        stop_gw(g)
    print('# dnsperf -m dot -c 4 -q 100, 3 s, qps by upstream: ' +
          ' '.join(res))


if __name__ == '__main__':
    sys.exit(suite.main())
