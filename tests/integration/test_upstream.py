#!/usr/bin/env python3
"""The pooled upstream manager against fault-injecting upstreams (uptest.py)
and real unbound over UDP, TCP and DoT. Clients ask the gateway over UDP
(the front-end does not matter here); health is read from the log.

Run: python3 tests/integration/test_upstream.py --binary build/dnsgw
"""

import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gwtest as G  # noqa: E402
import uptest as U  # noqa: E402

suite = G.Suite('upstream pool')
check = G.check


def gw(upstreams, up=None, level='info', extra=None, **kw):
    conf = {'upstream': dict(up or {}), 'log': {'level': level}}
    conf.update(extra or {})
    # These cases count what reaches the upstreams: no response cache.
    conf.setdefault('cache', {'size_bytes': 0})
    conf['upstream'].setdefault('timeout_ms', 500)
    conf['upstream'].setdefault('attempts', 2)
    g = G.Gateway(suite.binary, upstreams, dot=False, dns=True, config=conf,
                  **kw)
    return g.start()


def certs():
    return suite.fixture('certs', lambda: U.make_certs(G.tmpdir('dnsgw-upcerts-')))


def stop_gw(g):
    rc = g.stop()
    check(rc == 0, 'gateway exit status %s' % rc, g.log_tail())


def expect_ok(g, name='www.example.test', ip='192.0.2.7'):
    m, t = U.ask(g.dns, name)
    check(m is not None, 'no answer (%.1fs)' % t, g.log_tail())
    check(m.rcode_name == 'NOERROR', 'rcode %s' % m.rcode_name, g.log_tail())
    if ip:
        check(m.a_records() == [ip], 'answer %s' % m.a_records())
    return m, t


def expect_servfail(g, ede_code=None, within=None):
    m, t = U.ask(g.dns, 'www.example.test')
    check(m is not None, 'client timed out after %.1fs' % t, g.log_tail())
    check(m.rcode_name == 'SERVFAIL', 'rcode %s' % m.rcode_name, g.log_tail())
    if ede_code is not None:
        e = U.ede(m)
        check(e is not None and e[0] == ede_code, 'EDE %s, want %s' % (e, ede_code))
    if within is not None:
        check(t <= within, 'SERVFAIL after %.2fs, want <= %.1fs' % (t, within))
    return m, t


# --- pooling ---------------------------------------------------------------

@suite.case
def test_tcp_pipelined_connections_bounded(s):
    f = U.FaultServer('answer', delay=0.05)
    try:
        # 200 in flight, 200 waiting for a slot: generous timeout (the
        # scripted upstream is Python, and sanitizer builds are slow)
        g = gw(['tcp://127.0.0.1:%d' % f.port],
               {'max_conns_per_upstream': 2, 'max_inflight_per_conn': 100,
                'timeout_ms': 4000})
        names = ['n%d.example.test' % i for i in range(400)]
        got = U.ask_many(g.dns, names)
        ok = sum(1 for v in got.values() if v == 'NOERROR')
        other = {}
        for v in got.values():
            other[v] = other.get(v, 0) + 1
        check(ok == len(names), '%d of %d answered NOERROR (%s, %d unanswered)'
              % (ok, len(names), other, len(names) - len(got)), g.log_tail())
        check(f.accepts <= 2, 'upstream saw %d connections, cap is 2' % f.accepts)
        check(f.max_open <= 2, 'max %d open' % f.max_open)
        check(f.tcp_queries == len(names), 'upstream got %d queries' % f.tcp_queries)
        stop_gw(g)
    finally:
        f.stop()


@suite.case
def test_idle_connection_recycled(s):
    f = U.FaultServer('answer')
    try:
        g = gw(['tcp://127.0.0.1:%d' % f.port], {'idle_timeout_ms': 300})
        expect_ok(g)
        expect_ok(g)
        check(f.accepts == 1, 'two queries used %d connections' % f.accepts)
        t0 = time.monotonic()
        while f.open and time.monotonic() - t0 < 3:
            time.sleep(0.05)
        check(f.open == 0, 'idle connection still open after 3 s')
        expect_ok(g)
        check(f.accepts == 2, 'no reconnect after idle close')
        stop_gw(g)
    finally:
        f.stop()


# --- fault cases -------------------------------------------------------------

@suite.case
def test_blackhole_tcp(s):
    b = G.Blackhole()  # accepts into the backlog, never answers
    g = gw(['tcp://127.0.0.1:%d' % b.port], {'attempts': 1}, level='debug')
    for _ in range(3):
        expect_servfail(g, 22, within=2.0)
    check(U.log_has(g, 'upstream down'), 'no "upstream down" in the log',
          g.log_tail())
    # down: the next query fails at once, no client timeout
    expect_servfail(g, within=1.0)
    stop_gw(g)


@suite.case
def test_refused_connections(s):
    port = G.closed_port()
    g = gw(['tcp://127.0.0.1:%d' % port], {'attempts': 1})
    m, t = expect_servfail(g, 23, within=1.0)
    check(U.log_has(g, 'upstream connect failed'), 'connect failure not logged',
          g.log_tail())
    # three failed connects (after the reconnect backoffs) -> down
    for _ in range(12):
        time.sleep(0.25)
        U.ask(g.dns, 'www.example.test', timeout=2)
        if U.log_has(g, 'upstream down', timeout=0.1):
            break
    check(U.log_has(g, 'upstream down'), 'never marked down', g.log_tail())
    stop_gw(g)


@suite.case
def test_close_with_queries_pending_resent(s):
    f = U.FaultServer('close_pending', n=3)
    try:
        g = gw(['tcp://127.0.0.1:%d' % f.port], {'timeout_ms': 1500})
        names = ['c%d.example.test' % i for i in range(3)]
        got = U.ask_many(g.dns, names, timeout=5)
        check(all(got.get(n) == 'NOERROR' for n in names),
              'answers after the close: %s' % got, g.log_tail())
        check(f.accepts == 2, 'upstream saw %d connections, want 2' % f.accepts)
        check(not U.log_has(g, 'upstream down', timeout=0.2),
              'one closed connection took the upstream down')
        stop_gw(g)
    finally:
        f.stop()


@suite.case
def test_wrong_ids_and_questions_never_delivered(s):
    for mode in ('wrong_id', 'wrong_question'):
        f = U.FaultServer(mode)
        try:
            g = gw(['tcp://127.0.0.1:%d' % f.port], {'attempts': 1},
                   level='debug')
            expect_servfail(g, 22, within=2.0)
            check(f.tcp_queries >= 1, '%s: upstream got no query' % mode)
            stop_gw(g)
        finally:
            f.stop()


@suite.case
def test_drip_one_byte_per_second(s):
    f = U.FaultServer('drip')
    try:
        g = gw(['tcp://127.0.0.1:%d' % f.port], {'attempts': 1})
        expect_servfail(g, 22, within=2.0)
        # the dripping connection is retired once the query timed out
        t0 = time.monotonic()
        while f.open and time.monotonic() - t0 < 3:
            time.sleep(0.05)
        check(f.open == 0, 'dripping connection kept open')
        stop_gw(g)
    finally:
        f.stop()


@suite.case
def test_slow_answers(s):
    slow = U.FaultServer('answer', delay=0.3)
    slower = U.FaultServer('answer', delay=3.0)
    good = U.FaultServer('answer')
    try:
        g = gw(['tcp://127.0.0.1:%d' % slow.port], {'timeout_ms': 1000})
        m, t = expect_ok(g)
        check(t >= 0.25, 'answer after %.2fs from a 0.3 s upstream' % t)
        stop_gw(g)
        # too slow: the next upstream answers within one timeout
        g = gw(['tcp://127.0.0.1:%d' % slower.port,
                'tcp://127.0.0.1:%d' % good.port], {'timeout_ms': 400})
        m, t = expect_ok(g)
        check(t < 1.5, 'failover took %.2fs' % t)
        stop_gw(g)
    finally:
        for f in (slow, slower, good):
            f.stop()


@suite.case
def test_truncated_udp_retried_over_tcp(s):
    f = U.FaultServer('tc')
    try:
        g = gw(['udp://127.0.0.1:%d' % f.port])
        expect_ok(g)
        expect_ok(g, 'two.example.test')
        check(f.udp_queries == 2 and f.tcp_queries == 2,
              'udp %d tcp %d' % (f.udp_queries, f.tcp_queries))
        check(f.accepts == 1, 'TC retries used %d connections (pooled: 1)' %
              f.accepts)
        stop_gw(g)
    finally:
        f.stop()


# --- health probes, policies, overload --------------------------------------

@suite.case
def test_active_probes_down_and_up(s):
    f = U.FaultServer('silent')
    try:
        g = gw(['tcp://127.0.0.1:%d' % f.port],
               {'probe': {'name': 'example.test', 'type': 'SOA',
                          'interval_ms': 200, 'rise': 2, 'fall': 2},
                'timeout_ms': 150})
        check(U.log_has(g, 'upstream down', timeout=3), 'probes never took '
              'the silent upstream down', g.log_tail())
        f.mode = 'answer'
        check(U.log_has(g, 'upstream up', timeout=3), 'probes never brought '
              'it back up', g.log_tail())
        expect_ok(g)
        stop_gw(g)
    finally:
        f.stop()


@suite.case
def test_policies_spread_load(s):
    for policy in ('round-robin', 'random', 'least-outstanding',
                   'lowest-latency', 'ordered'):
        a, b = U.FaultServer('answer'), U.FaultServer('answer')
        try:
            g = gw(['udp://127.0.0.1:%d' % a.port, 'udp://127.0.0.1:%d' % b.port],
                   {'policy': policy, 'weights': [1, 3]})
            got = U.ask_many(g.dns, ['p%d.example.test' % i for i in range(200)])
            ok = sum(1 for v in got.values() if v == 'NOERROR')
            check(ok == 200, '%s: %d of 200 answered' % (policy, ok))
            na, nb = a.udp_queries, b.udp_queries
            if policy == 'ordered':
                check(nb == 0, 'ordered sent %d to the second' % nb)
            elif policy in ('round-robin', 'random'):
                check(30 <= na <= 70, '%s with weights 1:3: %d/%d' % (policy, na, nb))
            else:
                check(na + nb == 200, '%s: %d+%d' % (policy, na, nb))
            stop_gw(g)
        finally:
            a.stop()
            b.stop()


@suite.case
def test_per_client_waiting_cap_refused(s):
    f = U.FaultServer('silent')
    try:
        g = gw(['tcp://127.0.0.1:%d' % f.port], {'timeout_ms': 1500},
               extra={'limits': {'max_waiting_per_client': 5}})
        t0 = time.monotonic()
        got = U.ask_many(g.dns, ['w%d.example.test' % i for i in range(12)],
                         timeout=1.0)
        refused = [n for n, v in got.items() if v == 'REFUSED']
        check(len(refused) == 7, '%d REFUSED (want 7): %s' % (len(refused), got))
        check(time.monotonic() - t0 < 1.4, 'REFUSED not immediate')
        time.sleep(2)  # the 5 time out; the client may queue again
        got = U.ask_many(g.dns, ['x%d.example.test' % i for i in range(3)],
                         timeout=3)
        check(all(v == 'SERVFAIL' for v in got.values()) and len(got) == 3,
              'after the cap freed: %s' % got)
        stop_gw(g)
    finally:
        f.stop()


# --- TLS upstreams -------------------------------------------------------------

@suite.case
def test_tls_verified_and_resumed(s):
    c = certs()
    f = U.FaultServer('answer', tls=(c['good'], c['good_key']))
    try:
        g = gw(['tls://127.0.0.1:%d#dns.test' % f.port],
               {'ca_file': c['ca'], 'idle_timeout_ms': 200}, level='debug')
        expect_ok(g)
        check(U.log_has(g, 'connection open'), 'no open logged', g.log_tail())
        time.sleep(0.6)  # idle close, then a new connection resumes
        expect_ok(g)
        check(f.accepts == 2, '%d connections' % f.accepts)
        check(U.log_has(g, 'tls resumed'), 'session not resumed', g.log_tail(40))
        stop_gw(g)
    finally:
        f.stop()


@suite.case
def test_tls_wrong_name_expired_untrusted_refused(s):
    c = certs()
    cases = [('wrong', 'dns.test', c['ca'], 'certificate name mismatch'),
             ('expired', 'dns.test', c['ca'], 'certificate expired'),
             ('good', 'dns.test', None, 'not signed by a trusted CA')]
    for tag, name, ca, why in cases:
        f = U.FaultServer('answer', tls=(c[tag], c[tag + '_key']))
        try:
            up = {'attempts': 1}
            if ca:
                up['ca_file'] = ca
            g = gw(['tls://127.0.0.1:%d#%s' % (f.port, name)], up)
            expect_servfail(g, 23, within=2.0)
            check(U.log_has(g, why), '%s: no "%s" in the log' % (tag, why),
                  g.log_tail())
            check(f.tcp_queries == 0, '%s: a query reached the server' % tag)
            stop_gw(g)
        finally:
            f.stop()


@suite.case
def test_tls_spki_pin(s):
    c = certs()
    f = U.FaultServer('answer', tls=(c['good'], c['good_key']))
    try:
        # pinned: the chain need not verify (no CA given, none trusted)
        g = gw(['tls://127.0.0.1:%d#dns.test' % f.port],
               {'pins': ['dns.test=' + c['pin']], 'ca_file': '/nonexistent',
                'idle_timeout_ms': 200}, level='debug')
        expect_ok(g)
        # a resumed session is the pinned server's (only it holds the
        # ticket's key): it is accepted without a certificate to pin
        time.sleep(0.6)
        expect_ok(g)
        check(f.accepts == 2 and U.log_has(g, 'tls resumed'),
              'pinned session not resumed (%d connections)' % f.accepts,
              g.log_tail(40))
        stop_gw(g)
        bad = 'A' * 43 + '='
        g = gw(['tls://127.0.0.1:%d#dns.test' % f.port],
               {'pins': ['dns.test=' + bad], 'attempts': 1,
                'ca_file': c['ca']})
        expect_servfail(g, 23, within=2.0)
        check(U.log_has(g, 'SPKI pin mismatch'), 'no pin mismatch logged',
              g.log_tail())
        stop_gw(g)
    finally:
        f.stop()


@suite.case
def test_tls_bad_ca_file_refused_at_start(s):
    g = G.Gateway(suite.binary, ['tls://127.0.0.1:853#dns.test'], dot=False,
                  dns=True, extra_args=['--ca-file', '/nonexistent/ca.pem'])
    try:
        g.start()
        check(False, 'started with an unreadable CA file')
    except RuntimeError as e:
        check('cannot load CA certificates' in str(e), str(e)[:300])


# --- real resolvers ------------------------------------------------------------

def unbound():
    c = certs()
    return suite.fixture('unbound', lambda: U.UnboundTLS(c['good'], c['good_key']).start())


@suite.case
def test_unbound_udp_tcp_dot(s):
    u = unbound()
    c = certs()
    for url in ('udp://127.0.0.1:%d' % u.port, 'tcp://127.0.0.1:%d' % u.port,
                'tls://127.0.0.1:%d#dns.test' % u.tls_port):
        g = gw([url], {'ca_file': c['ca'], 'timeout_ms': 2000})
        expect_ok(g, ip='192.0.2.10')
        m, _ = U.ask(g.dns, 'nope.example.test')
        check(m is not None and m.rcode_name == 'NXDOMAIN', '%s: %s' % (url, m))
        stop_gw(g)


@suite.case(timeout=120)
def test_unbound_dot_load_connections_bounded(s):
    u = unbound()
    c = certs()
    g = gw(['tls://127.0.0.1:%d#dns.test' % u.tls_port],
           {'ca_file': c['ca'], 'timeout_ms': 2000, 'max_conns_per_upstream': 4},
           threads=2)
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], len(U.upstream_sockets(g, u.tls_port)))
            time.sleep(0.1)
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        qf = os.path.join(g.dir, 'queries.txt')
        with open(qf, 'w') as f:
            for i in range(2000):
                f.write('www.example.test A\nq%d.example.test A\n' % i)
        r = G.run(['dnsperf', '-s', '127.0.0.1', '-p', str(g.dns), '-d', qf,
                   '-l', '5', '-c', '20', '-q', '200'], timeout=60)
    finally:
        stop.set()
        t.join()
    check(r.rc == 0, 'dnsperf failed', r.describe())
    lost = [l for l in r.out.splitlines() if 'Queries lost' in l]
    check(peak[0] <= 8, '%d upstream connections (cap 4 x 2 workers)' % peak[0])
    check(peak[0] >= 1, 'no upstream connection seen')
    print('# dnsperf: %s; peak upstream connections %d' %
          (' '.join(l.strip() for l in lost), peak[0]))
    stop_gw(g)


if __name__ == '__main__':
    sys.exit(suite.main())
