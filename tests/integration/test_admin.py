#!/usr/bin/env python3
"""The admin listener (--admin): /metrics scraped while real clients (dig,
kdig over UDP, TCP, DoT and DoH) query through the real binary, counters
checked to move by what was sent, every scrape validated by
`promtool check metrics`; /healthz; /readyz flipping to 503 when the only
upstream dies (and back when it returns) and at once when a drain begins;
the HTTP reader's refusals (400/404/405/431/505), HEAD, and its bounds.

Run: python3 tests/integration/test_admin.py --binary build/dnsgw
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gwtest as G  # noqa: E402
from metricstest import (get, http, parse_metrics, promtool_check,  # noqa: E402
                         scrape, val)

suite = G.Suite('admin listener: metrics and health')
check = G.check


def unbound(s):
    return s.fixture('unbound', lambda: G.Unbound().start())


def gw(upstreams, admin, extra=None, threads=2, up=None):
    conf = {'admin': '127.0.0.1:%d' % admin, 'log': {'level': 'info'}}
    conf['upstream'] = dict(up or {})
    conf.update(extra or {})
    return G.Gateway(suite.binary, upstreams, dot=True, dns=True, config=conf,
                     threads=threads).start()


class Responder:
    """responder.py on a fixed port, so it can be killed and restarted."""

    def __init__(self, port=None):
        self.port = port or G.free_port()
        self.proc = None

    def start(self):
        for _ in range(50):
            self.proc = G.spawn([sys.executable, os.path.join(HERE, 'responder.py'),
                                 '--port', str(self.port)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            line = self.proc.stdout.readline().decode()
            if line.startswith('READY'):
                return self
            self.proc.wait(5)
            time.sleep(0.1)  # the port may still be in TIME_WAIT use
        raise RuntimeError('responder did not start on %d' % self.port)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    stop = kill


def wait_for(pred, timeout, step=0.05):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


# ---------------------------------------------------------------------------

@suite.case(timeout=120)
def test_metrics_move_with_traffic_and_pass_promtool(s):
    if not shutil.which('promtool'):
        raise G.TestFailure('promtool not installed (deps.sh --test: prometheus)')
    u = unbound(s)
    admin, doh = G.free_port(), G.free_port()
    g = G.Gateway(suite.binary, ['udp://127.0.0.1:%d' % u.port], dot=True,
                  dns=True, threads=2,
                  config={'admin': '127.0.0.1:%d' % admin,
                          'log': {'level': 'info'}})
    g.listen.append('doh://127.0.0.1:%d' % doh)
    g.start()

    # the harness's own readiness connects must be settled first
    time.sleep(0.5)
    m0, text0 = scrape(admin)
    check(val(m0, 'dnsgw_build_info', version=re.search(
        r'version="([^"]+)"', text0).group(1),
        wolfssl=re.search(r'wolfssl="([^"]+)"', text0).group(1),
        nghttp2=re.search(r'nghttp2="([^"]+)"', text0).group(1),
        ngtcp2=re.search(r'ngtcp2="([^"]+)"', text0).group(1)) == 1,
        'no dnsgw_build_info 1', text0[:800])
    check(val(m0, 'dnsgw_workers') == 2, 'dnsgw_workers %s' % val(m0, 'dnsgw_workers'))
    check(val(m0, 'dnsgw_certificate_expiry_timestamp_seconds') > time.time(),
          'certificate expiry %s not in the future' %
          val(m0, 'dnsgw_certificate_expiry_timestamp_seconds'))

    # Traffic through real clients while another thread scrapes; every
    # scrape must pass promtool and no counter may go backwards.
    stop = threading.Event()
    problems = []
    scrapes = [0]

    def scraper():
        prev = m0
        while not stop.is_set():
            try:
                cur, _ = scrape(admin)
            except G.TestFailure as e:
                problems.append(str(e))
                return
            for k, v in cur.items():
                if k[0].endswith('_total') and v < prev.get(k, 0):
                    problems.append('%s went from %s to %s' % (k, prev[k], v))
            prev = cur
            scrapes[0] += 1
    t = threading.Thread(target=scraper, daemon=True)
    t.start()
    try:
        for _ in range(3):
            G.expect_answer(G.dig(g.dns, 'www.example.test'), ['192.0.2.10'])
        G.expect_answer(G.dig(g.dns, 'nx.example.test'), [], status='NXDOMAIN')
        G.expect_answer(G.dig(g.dns, 'www.example.test', 'AAAA', tcp=True),
                        ['2001:db8::10'], rtype='AAAA')
        for _ in range(2):
            G.expect_answer(G.kdig(g.dot, 'www.example.test'), ['192.0.2.10'])
        res = G.kdig(doh, 'txt.example.test', 'TXT', tls=False,
                     extra=['+https'])
        check(res.rc == 0 and 'status: NOERROR' in res.out and
              'hello' in res.out, 'DoH query failed', res.describe())
    finally:
        time.sleep(0.3)
        stop.set()
        t.join(30)
    check(not problems, 'while traffic flowed: %s' % problems[:3])
    check(scrapes[0] >= 2, 'only %d scrapes during traffic' % scrapes[0])

    m1, text1 = scrape(admin)

    def d(name, **lb):
        return val(m1, name, **lb) - val(m0, name, **lb)
    want = [
        (('dnsgw_requests_total',), dict(transport='udp', type='A'), 4),
        (('dnsgw_requests_total',), dict(transport='tcp', type='AAAA'), 1),
        (('dnsgw_requests_total',), dict(transport='dot', type='A'), 2),
        (('dnsgw_requests_total',), dict(transport='doh', type='TXT'), 1),
        (('dnsgw_responses_total',), dict(rcode='NOERROR'), 7),
        (('dnsgw_responses_total',), dict(rcode='NXDOMAIN'), 1),
        (('dnsgw_request_duration_seconds_count',), dict(transport='udp'), 4),
        (('dnsgw_request_duration_seconds_count',), dict(transport='dot'), 2),
        (('dnsgw_request_duration_seconds_count',), dict(transport='doh'), 1),
        (('dnsgw_connections_total',), dict(transport='tcp'), 1),
        (('dnsgw_connections_total',), dict(transport='dot'), 2),
        (('dnsgw_handshakes_total',), dict(transport='dot'), 2),
        (('dnsgw_connections_total',), dict(transport='doh'), 1),
        (('dnsgw_handshakes_total',), dict(transport='doh'), 1),
        (('dnsgw_doh_responses_total',), dict(code='200'), 1),
    ]
    bad = ['%s%s moved %g, want %g' % (n[0], lb, d(n[0], **lb), w)
           for n, lb, w in want if d(n[0], **lb) != w]
    check(not bad, '; '.join(bad), text1[:4000])

    up = 'udp://127.0.0.1:%d' % u.port
    # the answers come from the upstream or the cache, never from nowhere
    hits = d('dnsgw_cache_hits_total')
    upq = d('dnsgw_upstream_requests_total', upstream=up)
    check(upq >= 3 and upq + hits >= 8,
          'upstream requests moved %g, cache hits %g, for 8 queries' % (upq, hits))
    if ('dnsgw_cache_hits_total', frozenset()) in m1:
        # three identical UDP queries over two per-worker caches: at least
        # one worker saw the name twice
        check(hits >= 1, 'cache hits moved %g' % hits)
    check(d('dnsgw_upstream_responses_total', upstream=up, rcode='NXDOMAIN') >= 1,
          'upstream NXDOMAIN not counted')
    check(d('dnsgw_upstream_request_duration_seconds_count', upstream=up) == upq,
          'upstream latency count %g != requests %g' %
          (d('dnsgw_upstream_request_duration_seconds_count', upstream=up), upq))
    check(val(m1, 'dnsgw_upstream_healthy', upstream=up) == 1, 'upstream not healthy')
    # every client has gone: connection gauges back to zero
    m2 = wait_for(lambda: (lambda m: m if all(
        val(m, 'dnsgw_connections_open', transport=t) == 0
        for t in ('tcp', 'dot', 'doh')) else None)(scrape(admin)[0]), 5)
    check(m2 is not None, 'connections_open not back to 0: %s' % [
        (t, val(scrape(admin)[0], 'dnsgw_connections_open', transport=t))
        for t in ('tcp', 'dot', 'doh')])
    check(g.stop() == 0, 'gateway exit status', g.log_tail())


@suite.case(timeout=60)
def test_doq_counted(s):
    import doqtest as Q
    u = unbound(s)
    admin, doq = G.free_port(), G.free_port()
    g = G.Gateway(suite.binary, ['udp://127.0.0.1:%d' % u.port], dot=False,
                  dns=False, threads=2,
                  config={'admin': '127.0.0.1:%d' % admin,
                          'log': {'level': 'info'}})
    g.listen.append('doq://127.0.0.1:%d' % doq)
    g.start()
    m0, _ = scrape(admin)
    res = Q.doq_client(suite.binary, doq, 'normal', n=3)
    check(res[0].get('handshake') and res[0].get('answers') == 3,
          'doq_client: %s' % res[0])

    def settled():
        m, _ = scrape(admin)
        return m if val(m, 'dnsgw_connections_open', transport='doq') == 0 \
            else None
    # the connection lingers for its closing period (RFC 9000 10.2)
    m1 = wait_for(settled, 8, step=0.2)
    check(m1 is not None, 'doq connection never closed in the gauges')

    def d(name, **lb):
        return val(m1, name, **lb) - val(m0, name, **lb)
    reqs = sum(v - m0.get(k, 0) for k, v in m1.items()
               if k[0] == 'dnsgw_requests_total' and
               ('transport', 'doq') in k[1])
    check(reqs == 3, 'doq requests moved %g, want 3' % reqs)
    for name, want in (('dnsgw_connections_total', 1),
                       ('dnsgw_handshakes_total', 1),
                       ('dnsgw_handshake_failures_total', 0),
                       ('dnsgw_request_duration_seconds_count', 3)):
        check(d(name, transport='doq') == want, '%s{doq} moved %g, want %d'
              % (name, d(name, transport='doq'), want))
    check(('dnsgw_doq_streams_open', frozenset()) in m1 and
          val(m1, 'dnsgw_doq_streams_open') == 0, 'dnsgw_doq_streams_open')
    check(g.stop() == 0, 'gateway exit status', g.log_tail())


@suite.case(timeout=60)
def test_healthz_and_http_refusals(s):
    u = unbound(s)
    admin = G.free_port()
    g = gw(['udp://127.0.0.1:%d' % u.port], admin)
    st, h, body = get(admin, '/healthz')
    check(st == 200 and body == b'ok\n', '/healthz %s %r' % (st, body))
    check(h.get('connection') == 'close', 'connection %r' % h.get('connection'))
    st, _, body = get(admin, '/readyz')
    check(st == 200 and body == b'ok\n', '/readyz %s %r' % (st, body))
    st, h, body = get(admin, '/metrics', 'HEAD')
    check(st == 200 and body == b'' and int(h['content-length']) > 1000,
          'HEAD /metrics: %s %s %r' % (st, h.get('content-length'), body[:50]))
    st, _, _ = get(admin, '/metrics?x=1')
    check(st == 200, 'query string: %s' % st)
    cases = [
        (b'GET /nope HTTP/1.1\r\n\r\n', 404),
        (b'POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n', 405),
        (b'DELETE /healthz HTTP/1.1\r\n\r\n', 405),
        (b'GET /metrics HTTP/2.0\r\n\r\n', 505),
        (b'GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n', 400),
        (b'\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03', 400),  # TLS
        (b'GET /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc', 413),
        (b'GET /' + b'a' * 300 + b' HTTP/1.1\r\n\r\n', 414),
        (b'GET / HTTP/1.1\r\nX: ' + b'a' * 5000, 431),
    ]
    for raw, want in cases:
        st, h, _ = http(admin, raw)
        check(st == want, '%r...: status %s, want %s' % (raw[:30], st, want))
        if want == 405:
            check(h.get('allow') == 'GET, HEAD', 'Allow %r' % h.get('allow'))

    # Bounded: a client that sends nothing is closed after the admin
    # timeout, and connections over the cap are closed at once while
    # scrapes work again once the idle ones are gone.
    idle = [socket.create_connection(('127.0.0.1', admin), timeout=10)
            for _ in range(16)]
    time.sleep(0.3)
    extra = socket.create_connection(('127.0.0.1', admin), timeout=3)
    try:
        got = extra.recv(10)
    except (ConnectionResetError, socket.timeout):
        got = b''
    check(got == b'', 'the 17th connection got %r' % got)
    extra.close()
    t0 = time.monotonic()
    try:
        got = idle[0].recv(10)
    except ConnectionResetError:
        got = b''
    took = time.monotonic() - t0
    check(got == b'' and 4.0 <= took + 0.3 <= 7.0,
          'idle connection closed after %.1fs with %r (want ~5s)' % (took, got))
    for c in idle:
        c.close()
    st, _, _ = wait_for(lambda: (lambda r: r if r[0] == 200 else None)(
        get(admin, '/healthz')), 3) or (None, None, None)
    check(st == 200, '/healthz after the flood: %s' % st)
    check(g.stop() == 0, 'gateway exit status', g.log_tail())


@suite.case(timeout=90)
def test_readyz_flips_when_only_upstream_dies(s):
    r = Responder().start()
    try:
        admin = G.free_port()
        g = gw(['udp://127.0.0.1:%d' % r.port], admin,
               up={'timeout_ms': 300, 'attempts': 1,
                   'probe': {'name': 'example.test', 'type': 'SOA',
                             'interval_ms': 200, 'rise': 2, 'fall': 2}})
        G.expect_answer(G.dig(g.dns, 'www.example.test'), ['192.0.2.1'])
        st, _, body = get(admin, '/readyz')
        check(st == 200, '/readyz before: %s %r' % (st, body))

        r.kill()
        t0 = time.monotonic()
        got = wait_for(lambda: get(admin, '/readyz')[0] == 503, 10)
        took = time.monotonic() - t0
        st, _, body = get(admin, '/readyz')
        check(got and body == b'no healthy upstream\n',
              '/readyz after the upstream died: %s %r' % (st, body), g.log_tail())
        m, text = scrape(admin, validate=shutil.which('promtool') is not None)
        up = 'udp://127.0.0.1:%d' % r.port
        check(val(m, 'dnsgw_upstream_healthy', upstream=up) == 0 and
              val(m, 'dnsgw_upstream_down_workers', upstream=up) == 2,
              'health gauges: healthy %s down_workers %s' % (
                  val(m, 'dnsgw_upstream_healthy', upstream=up),
                  val(m, 'dnsgw_upstream_down_workers', upstream=up)))
        check(val(m, 'dnsgw_upstream_probe_failures_total', upstream=up) >= 2,
              'probe failures not counted')
        # liveness is not readiness: the loops still run
        check(get(admin, '/healthz')[0] == 200, '/healthz failed with readyz')
        print('# readyz went 503 %.2fs after the upstream died' % took)

        r.start()  # same port: probes bring it back
        got = wait_for(lambda: get(admin, '/readyz')[0] == 200, 10)
        check(got, '/readyz did not return to 200 with the upstream back',
              g.log_tail())
        check(g.stop() == 0, 'gateway exit status', g.log_tail())
    finally:
        r.kill()


@suite.case(timeout=90)
def test_readyz_503_at_once_when_draining(s):
    r = Responder().start()
    try:
        admin = G.free_port()
        g = gw(['udp://127.0.0.1:%d' % r.port], admin,
               up={'timeout_ms': 5000},
               extra={'limits': {'drain_timeout_ms': 8000}})
        check(get(admin, '/readyz')[0] == 200, '/readyz before the drain')
        results = []

        def slow(i):
            results.append(G.kdig(g.dot, 'slow-2500.q%d.example.test' % i,
                                  timeout=8))
        ts = [threading.Thread(target=slow, args=(i,)) for i in range(3)]
        for t in ts:
            t.start()
        # wait until the slow queries are in flight upstream
        wait_for(lambda: get(admin, '/metrics')[2].decode().count(
            'dnsgw_upstream_requests_in_flight') and
            val(parse_metrics(get(admin, '/metrics')[2].decode()),
                'dnsgw_upstream_requests_in_flight',
                upstream='udp://127.0.0.1:%d' % r.port) >= 3, 3)
        t0 = time.monotonic()
        g.proc.send_signal(signal.SIGTERM)
        seen = None
        while time.monotonic() - t0 < 2:
            try:
                st, _, body = get(admin, '/readyz')
            except OSError:
                break
            if st == 503:
                seen = (time.monotonic() - t0, body)
                break
            time.sleep(0.01)
        check(seen is not None and seen[1] == b'draining\n',
              '/readyz during the drain: %r' % (seen,), g.log_tail())
        check(seen[0] < 0.5, '/readyz took %.2fs to say 503' % seen[0])
        check(g.alive(), 'gateway exited before its slow queries finished')
        m = parse_metrics(get(admin, '/metrics')[2].decode())
        check(val(m, 'dnsgw_draining') == 1, 'dnsgw_draining %s' % val(m, 'dnsgw_draining'))
        for t in ts:
            t.join(15)
        for res in results:
            G.expect_answer(res, ['192.0.2.1'])
        rc = g.stop()
        check(rc == 0, 'exit status %s' % rc, g.log_tail())
        print('# readyz said 503 %.3fs after SIGTERM; slow queries answered'
              % seen[0])
    finally:
        r.kill()


@suite.case(timeout=30)
def test_admin_off_by_default_and_bind_failure(s):
    u = unbound(s)
    g = G.Gateway(suite.binary, ['udp://127.0.0.1:%d' % u.port], dot=False,
                  dns=True).start()
    pid = g.proc.pid
    out = subprocess.run(['ss', '-Hltnp'], stdout=subprocess.PIPE).stdout.decode()
    mine = [l for l in out.splitlines() if 'pid=%d,' % pid in l]
    check(len(mine) == 1, 'without --admin: %d TCP listeners: %s' % (len(mine), mine))
    check(g.stop() == 0, 'gateway exit status', g.log_tail())
    # an admin address already taken: exit code 4 (bind) with the address
    blocker = socket.socket()
    blocker.bind(('127.0.0.1', 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        res = G.run([suite.binary, '--listen', 'udp://127.0.0.1:%d' % G.free_port(),
                     '--upstream', 'udp://127.0.0.1:%d' % u.port,
                     '--admin', '127.0.0.1:%d' % port], timeout=10)
        check(res.rc == 4 and ('127.0.0.1:%d' % port) in res.err,
              'taken admin port: rc %s: %s' % (res.rc, res.err.strip()))
    finally:
        blocker.close()


if __name__ == '__main__':
    sys.exit(suite.main())
