#!/usr/bin/python3
"""DNS over HTTPS (RFC 8484): HTTP/2, HTTP/1.1, h2c behind a proxy, every
error status, and the HTTP/2 abuse cases (Rapid Reset, clients that never
read, idle connections), with curl, kdig, dig, h2load and a raw h2 client."""

import os
import re
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gwtest as G  # noqa: E402
import dnswire as W  # noqa: E402
import dohtest as D  # noqa: E402
from gwtest import check  # noqa: E402

suite = G.Suite('dnsgw DoH')


def unbound(s):
    return s.fixture('unbound', lambda: G.Unbound().start())


def responder(s):
    return s.fixture('responder', lambda: G.ResponderProc().start())


class DohGateway(G.Gateway):
    """A gateway with doh:// and h2c:// listeners (ports .doh and .h2c)."""

    def __init__(self, binary, upstreams, conf=None):
        super().__init__(binary, upstreams, dot=False, config={})
        self.doh = G.free_port()
        self.h2c = G.free_port()
        self.listen = ['doh://127.0.0.1:%d' % self.doh,
                       'h2c://127.0.0.1:%d' % self.h2c]
        self.config = dict(conf or {})
        self.config.setdefault('log', {'level': 'debug'})

    def stream_ports_refused(self):
        out = []
        for port in (self.doh, self.h2c):
            try:
                socket.create_connection(('127.0.0.1', port), timeout=2).close()
            except OSError:
                out.append(port)
        return out

    def url(self, path='/dns-query', h2c=False):
        if h2c:
            return 'http://127.0.0.1:%d%s' % (self.h2c, path)
        return 'https://127.0.0.1:%d%s' % (self.doh, path)


def gw(s):
    """Forwards to unbound (example.test); trusts 127.0.0.2 as a proxy."""
    def make():
        return DohGateway(s.binary, ['udp://127.0.0.1:%d' % unbound(s).port],
                          conf={'doh': {'trusted_proxies': ['127.0.0.2/32']}}
                          ).start()
    return s.fixture('gw', make)


def gw_resp(s):
    """Forwards to the scripted responder; short timeouts for abuse cases."""
    def make():
        return DohGateway(s.binary, ['udp://127.0.0.1:%d' % responder(s).port],
                          conf={'limits': {'doh_idle_timeout_ms': 1500,
                                           'write_timeout_ms': 1500},
                                'upstream': {'timeout_ms': 3000,
                                             'attempts': 1}}).start()
    return s.fixture('gw_resp', make)


def q(name='www.example.test.', qtype='A', qid=0, **kw):
    return W.build_query(name, qtype, qid=qid, **kw)


def expect_dns(res, qid=0, want_a=('192.0.2.10',), max_age=300, rcode=0):
    check(res.status == 200, 'status %s, want 200' % res.status, res.describe())
    check(res.headers.get('content-type') == 'application/dns-message',
          'content-type %r' % res.headers.get('content-type'), res.describe())
    m = res.msg
    if max_age is not None:
        # The smallest TTL of the answer, and it counts down when the
        # answer comes from the response cache: at most max_age.
        ttls = [r[3] for r in m.answers + m.authority]
        want = min(ttls) if ttls else max_age
        cc = res.headers.get('cache-control') or ''
        check(cc == 'max-age=%d' % want and 0 < want <= max_age,
              'cache-control %r, want max-age=%d (<= %d)' %
              (cc, want, max_age), res.describe())
    check(m.qr and m.id == qid, 'id %d, want %d' % (m.id, qid), res.describe())
    check(m.rcode == rcode, 'rcode %d, want %d' % (m.rcode, rcode), res.describe())
    if want_a is not None:
        got = sorted(a for a in m.a_records())
        check(got == sorted(want_a), 'answer %s, want %s' % (got, want_a),
              res.describe())
    return m


# ------------------------------------------------------------ happy paths

@suite.case
def test_curl_h2_get(s):
    g = gw(s)
    res = D.curl(g.url() + '?dns=' + D.b64url(q()), http='2')
    check(res.version == 'HTTP/2', 'version %s' % res.version, res.describe())
    expect_dns(res)


@suite.case
def test_curl_h2_post_keeps_id(s):
    g = gw(s)
    res = D.curl(g.url(), http='2', body=q(qid=0x1234))
    expect_dns(res, qid=0x1234)


@suite.case
def test_curl_http11_get_and_post(s):
    g = gw(s)
    res = D.curl(g.url() + '?dns=' + D.b64url(q()), http='1.1')
    check(res.version == 'HTTP/1.1', 'version %s' % res.version, res.describe())
    expect_dns(res)
    res = D.curl(g.url(), http='1.1', body=q(qid=777))
    expect_dns(res, qid=777)


@suite.case
def test_http11_keepalive_two_requests(s):
    g = gw(s)
    u = g.url() + '?dns=' + D.b64url(q())
    r = G.run(['curl', '-sS', '-k', '-v', '--http1.1', '-o', '/dev/null', u,
               '-o', '/dev/null', u], timeout=20)
    check(r.rc == 0, 'curl failed', r.describe())
    check('Re-using existing connection' in r.err, 'connection not reused',
          r.describe())


@suite.case
def test_dot_and_doh_on_one_port(s):
    """dot:// and doh:// on the same address: one socket, ALPN decides."""
    port = G.free_port()
    g = G.Gateway(s.binary, ['udp://127.0.0.1:%d' % unbound(s).port],
                  dot=False, config={})
    g.listen = ['dot://127.0.0.1:%d' % port, 'doh://127.0.0.1:%d' % port]
    g.start()
    try:
        # both at the same time: a pipelined DoT client and HTTP/2 requests
        r = G.kdig(port, 'www.example.test')
        G.expect_answer(r, ['192.0.2.10'])
        url = 'https://127.0.0.1:%d/dns-query' % port
        res = D.curl(url + '?dns=' + D.b64url(q()), http='2')
        check(res.version == 'HTTP/2', 'version %s' % res.version,
              res.describe())
        expect_dns(res)
        res = D.curl(url, http='1.1', body=q(qid=4242))
        expect_dns(res, qid=4242)
        r = G.kdig(port, 'nx.example.test')
        G.expect_answer(r, None, status='NXDOMAIN')
    finally:
        check(g.stop() == 0, 'dnsgw did not exit cleanly', g.log_tail())


@suite.case
def test_negative_answer_soa_max_age(s):
    g = gw(s)
    res = D.curl(g.url() + '?dns=' + D.b64url(q('nx.example.test.')))
    # unbound's SOA: TTL 300, MINIMUM 300
    expect_dns(res, want_a=(), rcode=3, max_age=300)


@suite.case
def test_servfail_small_max_age(s):
    g = gw_resp(s)
    res = D.curl(g.url() + '?dns=' + D.b64url(q('servfail.test.')))
    check(res.status == 200 and res.msg.rcode == 2, 'want 200/SERVFAIL',
          res.describe())
    ma = int(res.headers.get('cache-control', 'max-age=999').split('=')[1])
    check(ma <= 5, 'SERVFAIL max-age %d' % ma, res.describe())


@suite.case
def test_never_truncated(s):
    g = gw_resp(s)
    # the responder sets TC over UDP; the gateway must fetch it over TCP
    res = D.curl(g.url() + '?dns=' + D.b64url(q('big-5000.test.', 'TXT',
                                                  udp_size=512)))
    check(res.status == 200, 'status %s' % res.status, res.describe())
    check(not res.msg.tc and len(res.body) > 4000,
          'tc=%s len=%d' % (res.msg.tc, len(res.body)), res.describe())


@suite.case
def test_no_tcp_keepalive_option_over_doh(s):
    g = gw(s)
    res = D.curl(g.url(), body=q(options=[(11, b'')]))
    m = expect_dns(res)
    check(m.option(11) is None, 'edns-tcp-keepalive in a DoH answer',
          res.describe())


@suite.case
def test_axfr_notimp(s):
    g = gw(s)
    res = D.curl(g.url() + '?dns=' + D.b64url(q('example.test.', 'AXFR')))
    check(res.status == 200 and res.msg.rcode == 4, 'want NOTIMP',
          res.describe())


@suite.case
def test_kdig_https_post_and_get(s):
    g = gw(s)
    for mode in ('+https', '+https-get'):
        r = G.kdig(g.doh, 'www.example.test', tls=False, extra=[mode])
        check(r.rc == 0, 'kdig exited %s' % r.rc, r.describe())
        check('(status: 200)' in r.out, 'no HTTP 200 in kdig output',
              r.describe())
        check('status: NOERROR' in r.out, 'not NOERROR', r.describe())
        check(r.answers('A') == ['192.0.2.10'], 'answer %s' % r.answers('A'),
              r.describe())
        want = 'HTTP/2-GET' if mode == '+https-get' else 'HTTP/2-POST'
        check(want in r.out, 'kdig did not use %s' % want, r.describe())


@suite.case
def test_dig_https(s):
    g = gw(s)
    r = G.dig(g.doh, 'www.example.test', extra=['+https'])
    G.expect_answer(r, ['192.0.2.10'])


@suite.case
def test_curl_doh_url_resolves_through_dnsgw(s):
    g = gw(s)
    before = len(g.lines_matching(r'msg="attempt sent"'))
    r = G.run(['curl', '-sS', '-v', '--max-time', '5', '--doh-insecure',
               '--doh-url', g.url(), 'http://www.example.test:%d/' %
               G.free_port()], timeout=20)
    # the fetch itself fails (nothing listens), the name resolved via DoH
    check('192.0.2.10' in r.err, 'www.example.test not resolved to 192.0.2.10',
          r.describe())
    check(len(g.wait_lines(r'msg="attempt sent"', before)) > before,
          'no upstream query seen', g.log_tail())


@suite.case
def test_h2c_prior_knowledge_and_http11(s):
    g = gw(s)
    u = g.url(h2c=True) + '?dns=' + D.b64url(q())
    res = D.curl(u, http='2pk')
    check(res.version == 'HTTP/2', 'version %s' % res.version, res.describe())
    expect_dns(res)
    res = D.curl(u, http='1.1')
    check(res.version == 'HTTP/1.1', 'version %s' % res.version, res.describe())
    expect_dns(res)


@suite.case(timeout=120)
def test_h2load_many_streams(s):
    g = gw(s)
    u = g.url() + '?dns=' + D.b64url(q())
    r = G.run(['h2load', '-n', '5000', '-c', '4', '-m', '100',
               '-H', 'accept: application/dns-message', u], timeout=90)
    check(r.rc == 0, 'h2load failed', r.describe())
    m = re.search(r'status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx',
                  r.out)
    check(m and int(m.group(1)) == 5000, 'not 5000 2xx', r.describe())
    check(re.search(r'requests: 5000 total, 5000 started, 5000 done, 5000 succeeded',
                    r.out), 'not all succeeded', r.describe())


@suite.case
def test_first_settings_max_concurrent_streams(s):
    g = gw(s)
    c = D.H2Client(g.doh)
    try:
        _, fr = c.frames_until(lambda f: f[0] == D.SETTINGS and not f[1] & D.ACK)
        check(fr is not None, 'no SETTINGS')
        st = D.settings_of(fr[3])
        check(st.get(3) == 100, 'MAX_CONCURRENT_STREAMS %s' % st.get(3))
    finally:
        c.close()


# --------------------------------------------------------- error statuses

@suite.case
def test_error_statuses(s):
    g = gw(s)
    u = g.url()
    good = D.b64url(q())
    qr1 = bytearray(q())
    qr1[2] |= 0x80
    cases = [
        ('no dns', D.curl(u), 400),
        ('empty dns', D.curl(u + '?dns='), 400),
        ('bad base64', D.curl(u + '?dns=%%%%'), 400),
        ('short', D.curl(u + '?dns=' + D.b64url(b'\x00' * 8)), 400),
        ('QR=1', D.curl(u + '?dns=' + D.b64url(bytes(qr1))), 400),
        ('wrong path', D.curl(g.url('/other') + '?dns=' + good), 404),
        ('PUT', D.curl(u + '?dns=' + good, method='PUT'), 405),
        ('DELETE h1', D.curl(u + '?dns=' + good, method='DELETE', http='1.1'), 405),
        ('wrong content-type', D.curl(u, body=q(),
                                      headers=['content-type: text/plain']), 415),
        ('body over 65535', D.curl(u, body=b'\x00' * 70000), 413),
        ('lying content-length h1', D.curl(u, http='1.1', body=q(),
                                          headers=['content-length: 1000000']), 413),
        ('GET parameter too long', D.curl(u + '?dns=' + 'A' * 5000), 414),
        ('too many headers', D.curl(u + '?dns=' + good,
                                    headers=['x-h%d: v' % i for i in range(80)]), 431),
        ('posted short body', D.curl(u, body=b'\x00' * 5), 400),
    ]
    for what, res, want in cases:
        check(res.status == want, '%s: status %s, want %s' % (what, res.status, want),
              res.describe())
        if want == 405:
            check(res.headers.get('allow') == 'GET, POST',
                  '%s: Allow %r' % (what, res.headers.get('allow')), res.describe())


def raw_h1(port, data, tls=True, timeout=5):
    """Sends raw bytes on an HTTP/1.1 connection; returns all it got back."""
    sock = socket.create_connection(('127.0.0.1', port), timeout=timeout)
    if tls:
        ctx = G.tls_context()
        ctx.set_alpn_protocols(['http/1.1'])
        sock = ctx.wrap_socket(sock)
    try:
        sock.sendall(data)
    except OSError:
        pass  # the server may answer and close before taking it all
    out = b''
    try:
        while True:
            d = sock.recv(65536)
            if not d:
                break
            out += d
    except (socket.timeout, OSError):
        pass
    sock.close()
    return out


@suite.case
def test_http11_framing_errors(s):
    g = gw(s)
    for tls, port in ((True, g.doh), (False, g.h2c)):
        def raw(data):
            return raw_h1(port, data, tls=tls)
        out = raw(b'POST /dns-query HTTP/1.1\r\nHost: x\r\n'
                     b'Content-Type: application/dns-message\r\n'
                     b'Transfer-Encoding: chunked\r\n\r\n22\r\n')
        check(out.startswith(b'HTTP/1.1 501 '), 'chunked: %r' % out[:80])
        out = raw(b'POST /dns-query HTTP/1.1\r\nHost: x\r\n'
                     b'Content-Type: application/dns-message\r\n\r\n')
        check(out.startswith(b'HTTP/1.1 411 '), 'no length: %r' % out[:80])
        out = raw(b'GET /dns-query?dns=' + b'A' * 9000 + b' HTTP/1.1\r\n\r\n')
        check(out.startswith(b'HTTP/1.1 414 '), 'long line: %r' % out[:80])
        out = raw(b'GET /dns-query HTTP/1.1\r\n' +
                     b''.join(b'X-A%d: %s\r\n' % (i, b'v' * 100) for i in range(90)) +
                     b'\r\n')
        check(out.startswith(b'HTTP/1.1 431 '), 'big head: %r' % out[:80])
        out = raw(b'GARBAGE\r\n\r\n')
        check(out.startswith(b'HTTP/1.1 400 '), 'garbage: %r' % out[:80])
        # pipelined keep-alive requests answered in order
        req = b'GET /dns-query?dns=%s HTTP/1.1\r\nHost: x\r\n\r\n'
        out = raw((req % D.b64url(q(qid=0)).encode()) +
                     (req % D.b64url(q('nx.example.test.')).encode()) +
                     b'GET /dns-query?dns=%s HTTP/1.1\r\nConnection: close\r\n\r\n'
                     % D.b64url(q()).encode())
        check(out.count(b'HTTP/1.1 200 OK') == 3, 'pipelined: %r' % out[:300])


# ------------------------------------------------------------- abuse cases

@suite.case(timeout=120)
def test_rapid_reset(s):
    g = gw_resp(s)
    r = responder(s)
    pid = g.proc.pid
    time.sleep(0.3)
    fds0 = D.fd_count(pid)
    c = D.H2Client(g.doh)
    names = []
    try:
        blob = b''
        for i in range(600):
            name = 'slow-2000.rr%d.test.' % i
            names.append(name)
            sid, data = c.request_frames('/dns-query?dns=' + D.b64url(q(name)))
            blob += data + D.frame(D.RST_STREAM, 0, sid, struct.pack('!I', D.CANCEL))
        try:
            c.send(blob)
        except OSError:
            pass
        frames, ga = c.frames_until(lambda f: f[0] == D.GOAWAY, timeout=10)
        check(ga is not None, 'no GOAWAY after 600 HEADERS+RST_STREAM',
              '%d frames' % len(frames))
        last, code = D.goaway_of(ga[3])
        check(code == D.ENHANCE_YOUR_CALM, 'GOAWAY code %d' % code)
        refused = [f for f in frames if f[0] == D.RST_STREAM and
                   struct.unpack('!I', f[3])[0] == D.REFUSED_STREAM]
        check(refused, 'no stream refused')
    finally:
        c.close()
    # upstream work for that connection never above the stream limit
    time.sleep(0.5)
    seen = sum(1 for rec in r.records() if '.rr' in (rec.get('qname') or ''))
    check(seen <= 100, '%d upstream queries from one connection' % seen)
    # the gateway keeps serving, and its descriptors come back
    res = D.curl(g.url() + '?dns=' + D.b64url(q('ok.test.')))
    check(res.status == 200, 'not serving after the attack', res.describe())
    deadline = time.monotonic() + 8
    while D.fd_count(pid) > fds0 and time.monotonic() < deadline:
        time.sleep(0.2)
    check(D.fd_count(pid) <= fds0, 'fds %d, baseline %d' % (D.fd_count(pid), fds0))


@suite.case(timeout=60)
def test_client_never_reads(s):
    g = gw_resp(s)
    c = D.H2Client(g.doh, rcvbuf=4096, timeout=2)
    local = c.local_port
    try:
        # big answers, never read: the gateway stops reading, then closes
        sent = 0
        try:
            for i in range(300):
                _, data = c.request_frames('/dns-query?dns=' +
                                           D.b64url(q('big-60000.nr%d.test.' % i, 'TXT')))
                c.send(data)
                sent += 1
        except (socket.timeout, OSError):
            pass
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            socks = [l for l in g.sockets_of(g.doh, local) if 'ESTAB' in l]
            if not socks:
                break
            time.sleep(0.3)
        check(not socks, 'connection still open 15 s after the client stopped '
              'reading (sent %d requests)' % sent, '\n'.join(socks))
        check(g.wait_lines(r'reason="(write stalled|output buffer full)"'),
              'no write-stall close logged', g.log_tail())
    finally:
        c.close()


@suite.case(timeout=30)
def test_idle_goaway(s):
    g = gw_resp(s)  # doh_idle_timeout_ms: 1500
    c = D.H2Client(g.doh)
    try:
        t0 = time.monotonic()
        frames, ga = c.frames_until(lambda f: f[0] == D.GOAWAY, timeout=6)
        check(ga is not None, 'no GOAWAY on an idle connection')
        dt = time.monotonic() - t0
        check(1.0 < dt < 4.0, 'GOAWAY after %.1fs, want ~1.5s' % dt)
        check(D.goaway_of(ga[3])[1] == D.NO_ERROR, 'GOAWAY code')
        _, more = c.frames_until(lambda f: False, timeout=3)
        check(c.closed, 'not closed after the idle GOAWAY')
    finally:
        c.close()


@suite.case(timeout=30)
def test_ping_flood_capped(s):
    g = gw_resp(s)
    c = D.H2Client(g.doh, rcvbuf=4096, timeout=3)
    try:
        # many PINGs never read: acks queue up until the cap closes us
        try:
            for _ in range(50):
                c.send(b''.join(D.frame(D.PING, 0, 0, b'12345678')
                                for _ in range(2000)))
        except (socket.timeout, OSError):
            pass
        deadline = time.monotonic() + 10
        socks = ['x']
        while time.monotonic() < deadline:
            socks = [l for l in g.sockets_of(g.doh, c.local_port) if 'ESTAB' in l]
            if not socks:
                break
            time.sleep(0.3)
        check(not socks, 'PING flood connection still open')
    finally:
        c.close()
    res = D.curl(g.url() + '?dns=' + D.b64url(q('ok.test.')))
    check(res.status == 200, 'not serving after the flood', res.describe())


@suite.case(timeout=30)
def test_continuation_flood_capped(s):
    g = gw_resp(s)
    c = D.H2Client(g.doh)
    try:
        blk = D.hpack_block([(':method', 'GET'), (':path', '/dns-query')])
        data = D.frame(D.HEADERS, 0, 1, blk)
        data += b''.join(D.frame(D.CONTINUATION, 0, 1,
                                 D.hpack_block([('x-a', 'b' * 100)]))
                         for _ in range(200))
        try:
            c.send(data)
        except OSError:
            pass
        frames, ga = c.frames_until(lambda f: f[0] == D.GOAWAY, timeout=5)
        check(ga is not None or c.closed, 'CONTINUATION flood not stopped')
    finally:
        c.close()


# ----------------------------------------------------- proxies and drain

@suite.case
def test_forwarded_only_from_trusted_proxy(s):
    g = gw(s)
    u = g.url(h2c=True) + '?dns=' + D.b64url(q())
    for http in ('2pk', '1.1'):
        n0 = len(g.lines_matching(r'forwarded client address.*client=198\.51\.100\.7'))
        i0 = len(g.lines_matching(r'forwarded header ignored.*peer=127\.0\.0\.1'))
        # trusted proxy (127.0.0.2): the header is believed
        res = D.curl(u, http=http, headers=['x-forwarded-for: 6.6.6.6, 198.51.100.7'],
                     extra=['--interface', '127.0.0.2'])
        expect_dns(res)
        # untrusted peer (127.0.0.1): ignored
        res = D.curl(u, http=http, headers=['x-forwarded-for: 198.51.100.7'])
        expect_dns(res)
        check(len(g.wait_lines(
            r'forwarded client address.*peer=127\.0\.0\.2 client=198\.51\.100\.7', n0)) == n0 + 1,
            'trusted XFF not honoured (%s)' % http, g.log_tail())
        check(len(g.wait_lines(r'forwarded header ignored.*peer=127\.0\.0\.1', i0)) == i0 + 1,
              'untrusted XFF not ignored (%s)' % http, g.log_tail())
    # Forwarded (RFC 7239) too
    res = D.curl(u, http='2pk', headers=['forwarded: for="[2001:db8::5]:80"'],
                 extra=['--interface', '127.0.0.2'])
    expect_dns(res)
    check(g.wait_lines(r'forwarded client address.*client=2001:db8::5'),
          'Forwarded not honoured', g.log_tail())


@suite.case(timeout=60)
def test_drain_goaway_finishes_in_flight(s):
    r = responder(s)
    g = DohGateway(s.binary, ['udp://127.0.0.1:%d' % r.port]).start()
    try:
        c = D.H2Client(g.doh)
        c.frames_until(lambda f: f[0] == D.SETTINGS and not f[1] & D.ACK)
        sid = c.get(q('slow-1000.drain.test.'))
        time.sleep(0.3)
        g.proc.send_signal(15)
        frames, _ = c.frames_until(
            lambda f: f[0] == D.DATA and f[2] == sid and f[1] & D.END_STREAM,
            timeout=6)
        types = [f[0] for f in frames]
        check(D.GOAWAY in types, 'no GOAWAY on drain: %s' % types)
        data = [f for f in frames if f[0] == D.DATA and f[2] == sid]
        check(data, 'in-flight answer not delivered: %s' % types)
        m = W.parse(b''.join(f[3] for f in data))
        check(m.a_records() == ['192.0.2.1'], 'answer %s' % m.a_records())
        rc = g.proc.wait(10)
        check(rc == 0, 'exit status %s' % rc, g.log_tail())
        g.stopped_on_purpose = True
    finally:
        g.stop()


if __name__ == '__main__':
    sys.exit(suite.main())
