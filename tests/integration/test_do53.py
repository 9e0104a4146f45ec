#!/usr/bin/python3
"""Plain DNS front-ends (UDP and TCP, RFC 1035/7766) and the UDP upstream side
of the real dnsgw binary: truncation, TC retry over TCP upstream, timeouts,
failover, mismatched upstream answers, SERVFAIL with Extended DNS Errors.

Run: /usr/bin/python3 tests/integration/test_do53.py --binary build/dnsgw
"""

import os
import random
import re
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dnswire as W  # noqa: E402
import gwtest as G  # noqa: E402
from gwtest import check  # noqa: E402

suite = G.Suite('dnsgw plain DNS (UDP/TCP) and upstream integration tests')

UP_TIMEOUT_MS = 500
UP_ATTEMPTS = 2


def certs(s):
    return s.fixture('certs', lambda: G.gen_cert(G.tmpdir('dnsgw-certs-')))


def unbound(s):
    return s.fixture('unbound', lambda: G.Unbound().start())


def responder(s):
    return s.fixture('responder', lambda: G.ResponderProc().start())


def gw_unbound(s):
    """Flags only; UDP+TCP+DoT listeners; upstream unbound."""
    def make():
        c, k = certs(s)
        return G.Gateway(s.binary, ['udp://127.0.0.1:%d' % unbound(s).port],
                         dot=True, dns=True, cert=c, key=k).start()
    return s.fixture('gw_unbound', make)


def _short_upstream_conf():
    return {'upstream': {'timeout_ms': UP_TIMEOUT_MS, 'attempts': UP_ATTEMPTS}}


def gw_resp(s):
    """Upstream responder, timeout_ms 500, attempts 2."""
    def make():
        c, k = certs(s)
        return G.Gateway(s.binary, ['udp://127.0.0.1:%d' % responder(s).port],
                         dot=True, dns=True, cert=c, key=k,
                         config=_short_upstream_conf()).start()
    return s.fixture('gw_resp', make)


def fresh_gw_resp(s, tag):
    """A gateway of its own for a case that makes upstream attempts fail:
    passive health (3 consecutive failures mark an upstream down) must not
    leak from one case into the next."""
    def make():
        c, k = certs(s)
        return G.Gateway(s.binary, ['udp://127.0.0.1:%d' % responder(s).port],
                         dot=True, dns=True, cert=c, key=k,
                         config=_short_upstream_conf()).start()
    return s.fixture('gw_resp_' + tag, make)


def gw_down(s):
    """Upstream: a closed port (ICMP port unreachable)."""
    def make():
        c, k = certs(s)
        return G.Gateway(s.binary, ['udp://127.0.0.1:%d' % G.closed_port()],
                         dot=True, dns=True, cert=c, key=k,
                         config=_short_upstream_conf()).start()
    return s.fixture('gw_down', make)


def gw_failover(s):
    """Two upstreams: a blackhole (bound, never answers), then unbound."""
    def make():
        c, k = certs(s)
        bh = s.fixture('blackhole', G.Blackhole)
        conf = {'upstream': {'timeout_ms': UP_TIMEOUT_MS, 'attempts': 3}}
        return G.Gateway(s.binary, ['udp://127.0.0.1:%d' % bh.port,
                                    'udp://127.0.0.1:%d' % unbound(s).port],
                         dot=True, dns=True, cert=c, key=k, config=conf).start()
    return s.fixture('gw_failover', make)


def uniq(label):
    return '%s.u%d.example.test' % (label, random.randint(0, 10**9))


def assert_serving(g, name='www.example.test', want=('192.0.2.10',)):
    G.expect_answer(G.dig(g.dns, name), list(want))
    if g.dot:
        G.expect_answer(G.kdig(g.dot, name, tls=True), list(want))


# ---------------------------------------------------------------------------

@suite.case
def test_udp_dig_kdig(s):
    g = gw_unbound(s)
    G.expect_answer(G.dig(g.dns, 'www.example.test', extra=['+notcp']), ['192.0.2.10'])
    G.expect_answer(G.kdig(g.dns, 'www.example.test', tls=False), ['192.0.2.10'])
    G.expect_answer(G.kdig(g.dns, 'www.example.test', 'AAAA', tls=False),
                    ['2001:db8::10'], rtype='AAAA')
    G.expect_answer(G.dig(g.dns, 'missing.example.test'), [], status='NXDOMAIN')


@suite.case
def test_tcp_dig_kdig(s):
    g = gw_unbound(s)
    G.expect_answer(G.dig(g.dns, 'www.example.test', tcp=True), ['192.0.2.10'])
    G.expect_answer(G.kdig(g.dns, 'www.example.test', tls=False, tcp=True),
                    ['192.0.2.10'])
    G.expect_answer(G.kdig(g.dns, 'missing.example.test', tls=False, tcp=True), [],
                    status='NXDOMAIN')


@suite.case
def test_tcp_pipelined(s):
    g = gw_unbound(s)
    c = G.StreamClient(g.dns, tls=False)
    try:
        c.send(b''.join(W.frame(W.build_query('www.example.test', qid=i))
                        for i in range(30)))
        ids = set()
        for _ in range(30):
            m = c.recv_msg(5)
            check(m.a_records() == ['192.0.2.10'], 'bad answer %r' % m)
            ids.add(m.id)
        check(ids == set(range(30)), 'ids %s' % sorted(ids))
    finally:
        c.close()


@suite.case
def test_udp_raw_ids_and_questions(s):
    g = gw_unbound(s)
    for i in range(10):
        qid = random.randint(0, 0xffff)
        m = G.udp_query(g.dns, W.build_query('www.example.test', qid=qid))
        check(m.id == qid and m.qr, 'id %d for query %d' % (m.id, qid))
        check(m.questions[:1] == [('www.example.test.', 1, 1)], 'question %s' % m.questions)
        check(m.a_records() == ['192.0.2.10'], 'answer %r' % m)


@suite.case
def test_udp_bad_input(s):
    g = gw_unbound(s)
    m = G.udp_query(g.dns, W.build_query('example.test', 'SOA', qid=0x4444,
                                         opcode=W.OPCODE_NOTIFY, rd=False))
    check(m.id == 0x4444 and m.rcode_name == 'NOTIMP', 'NOTIFY: %r' % m)
    m = G.udp_query(g.dns, W.build_query(None, qid=0x2222, questions=[
        ('www.example.test', 'A'), ('www.example.test', 'AAAA')]))
    check(m.id == 0x2222 and m.rcode_name == 'FORMERR', 'QDCOUNT=2: %r' % m)
    garbage = struct.pack('!HHHHHH', 0xbeef, 0x0100, 1, 0, 0, 0) + b'\x07exa'
    m = G.udp_query(g.dns, garbage)
    check(m.id == 0xbeef and m.rcode_name == 'FORMERR', 'truncated question: %r' % m)
    # (RFC 7828 3.3.1: over UDP the keepalive option is ignored: not tested)
    # a runt datagram is dropped, not answered
    try:
        m = G.udp_query(g.dns, b'\x12\x34\x01', timeout=1.0)
        check(False, '3-byte datagram answered: %r' % m)
    except (socket.timeout, TimeoutError):
        pass
    assert_serving(g)


@suite.case
def test_udp_truncation_to_client_bufsize(s):
    g = gw_resp(s)
    name = uniq('big')
    # big answer (~3000 B) with bufsize 1232 over UDP: TC=1
    r = G.dig(g.dns, name, 'TXT', extra=['+ignore', '+bufsize=1232'])
    check(r.status == 'NOERROR', 'status %s' % r.status, r.describe())
    check('tc' in r.flags, 'no TC flag on a ~3000 B answer for bufsize 1232 (flags %s)'
          % sorted(r.flags), r.describe())
    # dig then retries over TCP by itself and gets everything
    r = G.dig(g.dns, name, 'TXT', extra=['+bufsize=1232'])
    check(r.status == 'NOERROR', 'status %s' % r.status, r.describe())
    check('Truncated, retrying in TCP mode' in r.out, 'dig did not retry over TCP',
          r.describe())
    n = len(r.answers('TXT'))
    check(n >= 10, 'only %d TXT records after the TCP retry' % n, r.describe())
    # a raw UDP look: TC set, the message fits the buffer
    m = G.udp_query(g.dns, W.build_query(name, 'TXT', udp_size=1232))
    check(m.tc and len(m.raw) <= 1232, 'raw UDP: tc=%s len=%d' % (m.tc, len(m.raw)))


@suite.case
def test_udp_truncation_no_edns_512(s):
    g = gw_resp(s)
    name = uniq('size-1000')
    # ~1000 B answer: fits 1232, not 512
    r = G.dig(g.dns, name, 'TXT', extra=['+ignore', '+noedns'])
    check(r.status == 'NOERROR', 'status %s' % r.status, r.describe())
    check('tc' in r.flags, 'no TC on a ~1000 B answer without EDNS (flags %s)' %
          sorted(r.flags), r.describe())
    m = G.udp_query(g.dns, W.build_query(name, 'TXT', edns=False))
    check(m.tc and len(m.raw) <= 512, 'raw no-EDNS: tc=%s len=%d' % (m.tc, len(m.raw)))
    r = G.dig(g.dns, name, 'TXT', extra=['+ignore', '+bufsize=1232'])
    check(r.status == 'NOERROR' and 'tc' not in r.flags,
          'TC on a ~1000 B answer with bufsize 1232 (flags %s)' % sorted(r.flags),
          r.describe())
    check(len(r.answers('TXT')) >= 4, 'short answer', r.describe())
    r = G.dig(g.dns, name, 'TXT', extra=['+noedns'])
    check(r.status == 'NOERROR' and len(r.answers('TXT')) >= 4,
          'no full answer after dig\'s TCP retry', r.describe())


@suite.case
def test_upstream_tc_retried_over_tcp(s):
    g = gw_resp(s)
    resp = responder(s)
    name = uniq('tc')
    r = G.dig(g.dns, name, extra=['+ignore'])
    G.expect_answer(r, ['192.0.2.1'])
    check('tc' not in r.flags, 'client got TC for a small answer', r.describe())
    recs = resp.wait_records(name, 2)
    transports = sorted(x['transport'] for x in recs)
    check('udp' in transports and 'tcp' in transports,
          'upstream saw %s, want a UDP query then a TCP retry' % transports)
    # the same over DoT and TCP front-ends
    G.expect_answer(G.kdig(g.dot, uniq('tc'), tls=True), ['192.0.2.1'])
    G.expect_answer(G.dig(g.dns, uniq('tc'), tcp=True), ['192.0.2.1'])
    # big answer: TC upstream, full answer over TCP front-end and DoT
    r = G.dig(g.dns, uniq('big'), 'TXT', tcp=True)
    check(r.status == 'NOERROR' and len(r.answers('TXT')) >= 10,
          'big over TCP: %d TXT' % len(r.answers('TXT')), r.describe())
    r = G.kdig(g.dot, uniq('big'), 'TXT', tls=True)
    check(r.status == 'NOERROR' and len(r.answers('TXT')) >= 10,
          'big over DoT: %d TXT' % len(r.answers('TXT')), r.describe())


def _expect_servfail_ede(r, max_s, min_s=0.0, what=''):
    check(r.status == 'SERVFAIL', '%sstatus %s, want SERVFAIL' % (what, r.status),
          r.describe())
    check(r.elapsed < max_s, '%sSERVFAIL after %.2fs, want < %.2fs' %
          (what, r.elapsed, max_s), r.describe())
    check(r.elapsed >= min_s, '%sSERVFAIL after %.2fs, before the upstream '
          'timeout (%.2fs)' % (what, r.elapsed, min_s), r.describe())
    check(re.search(r'EDE: \d+', r.out), '%sno Extended DNS Error shown' % what, r.describe())


@suite.case
def test_upstream_down_servfail(s):
    g = gw_down(s)
    budget = UP_TIMEOUT_MS * UP_ATTEMPTS / 1000.0 + 1.0
    r = G.dig(g.dns, 'www.example.test', timeout=5)
    _expect_servfail_ede(r, budget, what='dig UDP: ')
    r = G.kdig(g.dot, 'www.example.test', tls=True, extra=['+edns'], timeout=5)
    _expect_servfail_ede(r, budget, what='kdig DoT: ')
    r = G.dig(g.dns, 'www.example.test', tcp=True, timeout=5)
    _expect_servfail_ede(r, budget, what='dig TCP: ')


@suite.case
def test_upstream_drop_servfail(s):
    g = fresh_gw_resp(s, 'drop')
    resp = responder(s)
    budget = UP_TIMEOUT_MS * UP_ATTEMPTS / 1000.0 + 1.0
    name = uniq('drop')
    r = G.dig(g.dns, name, timeout=5)
    _expect_servfail_ede(r, budget, min_s=UP_TIMEOUT_MS / 1000.0 * 0.9)
    recs = resp.records(name)
    check(1 <= len(recs) <= UP_ATTEMPTS, 'upstream saw %d attempts, attempts is %d' %
          (len(recs), UP_ATTEMPTS))
    ids = [x['id'] for x in recs]
    ports = [x['peer'] for x in recs]
    if len(recs) == 2:
        check(ids[0] != ids[1] or ports[0] != ports[1],
              'retry reused the same ID and source port: %s %s' % (ids, ports))


@suite.case
def test_failover_to_second_upstream(s):
    g = gw_failover(s)
    for i in range(4):
        r = G.dig(g.dns, 'www.example.test', timeout=5)
        G.expect_answer(r, ['192.0.2.10'])
        check(r.elapsed < UP_TIMEOUT_MS / 1000.0 * 2 + 1,
              'query %d took %.2fs' % (i, r.elapsed), r.describe())
    G.expect_answer(G.kdig(g.dot, 'www.example.test', tls=True, timeout=5),
                    ['192.0.2.10'])


@suite.case
def test_wrong_id_ignored(s):
    g = fresh_gw_resp(s, 'wrongid')
    r = G.dig(g.dns, uniq('wrongid'), timeout=5)
    check('192.0.2.66' not in r.out, 'the wrong-ID answer was accepted', r.describe())
    _expect_servfail_ede(r, UP_TIMEOUT_MS * UP_ATTEMPTS / 1000.0 + 1.0,
                         min_s=UP_TIMEOUT_MS / 1000.0 * 0.9)
    # a right answer after the wrong one is taken: the query kept waiting
    g = fresh_gw_resp(s, 'wrongidok')
    r = G.dig(g.dns, uniq('wrongidok'), timeout=5)
    G.expect_answer(r, ['192.0.2.1'])


@suite.case
def test_wrong_question_ignored(s):
    g = fresh_gw_resp(s, 'wrongq')
    r = G.dig(g.dns, uniq('wrongq'), timeout=5)
    check('192.0.2.67' not in r.out, 'the wrong-question answer was accepted',
          r.describe())
    _expect_servfail_ede(r, UP_TIMEOUT_MS * UP_ATTEMPTS / 1000.0 + 1.0,
                         min_s=UP_TIMEOUT_MS / 1000.0 * 0.9)
    g = fresh_gw_resp(s, 'wrongqok')
    r = G.dig(g.dns, uniq('wrongqok'), timeout=5)
    G.expect_answer(r, ['192.0.2.1'])


@suite.case
def test_upstream_down_then_recovers(s):
    """Failures mark the only upstream down: SERVFAIL promptly while it is
    down, and it rejoins by itself once it answers again."""
    g = fresh_gw_resp(s, 'recover')
    fast = None
    for i in range(6):
        r = G.dig(g.dns, uniq('drop'), timeout=5)
        check(r.status == 'SERVFAIL', 'drop %d: status %s' % (i, r.status), r.describe())
        if r.elapsed < UP_TIMEOUT_MS / 1000.0 * 0.5:
            fast = r
            break
    check(fast is not None, 'six dropped queries and the upstream is never '
          'considered down (every query waits for its timeouts)')
    check(re.search(r'EDE: \d+', fast.out), 'fail-fast SERVFAIL without EDE',
          fast.describe())
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < 8:
        last = G.dig(g.dns, uniq('ok'), timeout=3)
        if last.answers('A') == ['192.0.2.1']:
            break
        time.sleep(0.25)
    check(last.answers('A') == ['192.0.2.1'], 'upstream not back 8 s after it '
          'answers again', last.describe())
    if G.VERBOSE:
        print('# upstream back after %.2fs' % (time.monotonic() - t0))


@suite.case
def test_upstream_rcodes_passed_through(s):
    g = gw_resp(s)
    G.expect_answer(G.dig(g.dns, uniq('nx')), [], status='NXDOMAIN')
    G.expect_answer(G.dig(g.dns, uniq('refused')), [], status='REFUSED')
    r = G.dig(g.dns, uniq('servfail'))
    check(r.status == 'SERVFAIL', 'status %s' % r.status, r.describe())


@suite.case
def test_upstream_query_hygiene(s):
    """Random upstream IDs and source ports (RFC 5452); ECS stripped."""
    g = gw_resp(s)
    resp = responder(s)
    names = [uniq('hyg') for _ in range(8)]
    for n in names:
        m = G.udp_query(g.dns, W.build_query(n, qid=0x4242,
                                             options=[W.ecs_option('198.51.100.0', 24)]))
        check(m.id == 0x4242 and m.a_records() == ['192.0.2.1'], 'answer %r' % m)
    recs = [resp.wait_records(n)[0] for n in names]
    ids = {x['id'] for x in recs}
    ports = {x['peer'] for x in recs}
    check(len(ids) >= 6, 'upstream IDs not random: %s' % sorted(ids))
    check(0x4242 not in ids or len(ids) > 1, 'client ID forwarded as is')
    check(len(ports) >= 4, 'upstream source ports not random: %s' % sorted(ports))
    check(not any(x.get('ecs') for x in recs), 'ECS forwarded upstream')


@suite.case
def test_sigterm_clean_exit(s):
    G.stop_gateway_fixtures(s)


if __name__ == '__main__':
    sys.exit(suite.main())
