#!/usr/bin/env python3
"""The response cache of the real dnsgw binary, driven by kdig and dig.

The upstream is the scripted responder (responder.py), which logs every
query it receives: a query answered from the cache is one the upstream never
saw. Gateways run one worker thread, because each worker has its own cache.

Run: /usr/bin/python3 tests/integration/test_cache.py --binary build/dnsgw
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gwtest as G  # noqa: E402
from gwtest import check  # noqa: E402

suite = G.Suite('dnsgw response cache')


def certs(s):
    return s.fixture('certs', lambda: G.gen_cert(G.tmpdir('dnsgw-certs-')))


def responder(s):
    return s.fixture('responder', lambda: G.ResponderProc().start())


def gw(s, resp=None, config=None, extra_args=()):
    c, k = certs(s)
    conf = None
    if config is not None:
        conf = dict(config)
        conf.setdefault('upstream', {'timeout_ms': 400, 'attempts': 1})
    return G.Gateway(s.binary, ['udp://127.0.0.1:%d' % (resp or responder(s)).port],
                     dot=True, dns=True, cert=c, key=k, config=conf,
                     extra_args=extra_args).start()


def shared_gw(s):
    """Cache on with the defaults (flags only)."""
    return s.fixture('gw', lambda: gw(s))


RR_LINE = re.compile(r'^(\S+)\s+(\d+)\s+IN\s+([A-Z0-9]+)\s+(.*)$')


def ttls(r, rtype):
    """TTLs of every record of rtype that kdig/dig printed (any section)."""
    out = []
    for line in r.out.splitlines():
        m = RR_LINE.match(line.strip())
        if m and m.group(3) == rtype:
            out.append(int(m.group(2)))
    return out


def upstream_count(resp, name, want=None, timeout=1.0):
    """Queries for name the responder received (waits a little for its log
    to settle when want is given)."""
    if want is not None:
        resp.wait_records(name, want, timeout)
        time.sleep(0.2)  # and nothing more arrives
    return len(resp.records(name))


def udp(g, name, qtype='A', extra=()):
    return G.kdig(g.dns, name, qtype, tls=False, extra=list(extra))


def dot(g, name, qtype='A', extra=()):
    return G.kdig(g.dot, name, qtype, tls=True, extra=list(extra))


# ---------------------------------------------------------------------------

@suite.case
def test_second_query_answered_from_cache(s):
    g, resp = shared_gw(s), responder(s)
    name = 'hit.example.test'
    r1 = udp(g, name)
    G.expect_answer(r1, ['192.0.2.1'])
    r2 = udp(g, name)
    G.expect_answer(r2, ['192.0.2.1'])
    # kdig checks that the answer carries its own (random) message ID
    check(upstream_count(resp, name, 1) == 1,
          'upstream saw %d queries for %s, want 1' % (len(resp.records(name)), name))
    # the same name in another case is the same entry (RFC 4343)
    G.expect_answer(udp(g, 'HiT.Example.TEST'), ['192.0.2.1'])
    check(upstream_count(resp, name) == 1, 'case-changed name went upstream')
    # a stream client is another transport class: fetched once, then cached
    G.expect_answer(dot(g, name), ['192.0.2.1'])
    G.expect_answer(dot(g, name), ['192.0.2.1'])
    G.expect_answer(G.dig(g.dns, name, tcp=True), ['192.0.2.1'])
    check(upstream_count(resp, name, 2) == 2,
          'upstream saw %d queries, want 2 (one per transport class)' %
          len(resp.records(name)))


@suite.case
def test_ttl_counts_down(s):
    g, resp = shared_gw(s), responder(s)
    name = 'ttl.example.test'
    r1 = udp(g, name)
    G.expect_answer(r1, ['192.0.2.1'])
    check(ttls(r1, 'A') == [60], 'first TTL %s, want [60]' % ttls(r1, 'A'), r1.describe())
    time.sleep(2.3)
    r2 = udp(g, name)
    G.expect_answer(r2, ['192.0.2.1'])
    t2 = ttls(r2, 'A')
    check(len(t2) == 1 and 56 <= t2[0] <= 58, 'TTL after 2.3 s: %s, want 57 or 58' % t2,
          r2.describe())
    check(upstream_count(resp, name, 1) == 1, 'second query went upstream')


@suite.case
def test_nxdomain_cached_for_soa_minimum(s):
    g, resp = shared_gw(s), responder(s)
    name = 'nxmin.example.test'     # SOA TTL 3600, MINIMUM 7
    r1 = udp(g, name)
    G.expect_answer(r1, [], status='NXDOMAIN')
    r2 = udp(g, name)
    G.expect_answer(r2, [], status='NXDOMAIN')
    t = ttls(r2, 'SOA')
    check(len(t) == 1 and t[0] <= 7, 'cached SOA TTL %s, want <= 7 (RFC 2308)' % t,
          r2.describe())
    check(upstream_count(resp, name, 1) == 1, 'second NXDOMAIN went upstream')
    time.sleep(7.3)
    G.expect_answer(udp(g, name), [], status='NXDOMAIN')
    check(upstream_count(resp, name, 2) == 2,
          'after the SOA minimum the upstream saw %d queries, want 2' %
          len(resp.records(name)))


@suite.case
def test_do_bit_keyed_separately(s):
    g, resp = shared_gw(s), responder(s)
    name = 'dnssec.example.test'
    G.expect_answer(udp(g, name, extra=['+dnssec']), ['192.0.2.1'])
    G.expect_answer(udp(g, name, extra=['+dnssec']), ['192.0.2.1'])
    check(upstream_count(resp, name, 1) == 1, 'DO=1 repeat went upstream')
    G.expect_answer(udp(g, name), ['192.0.2.1'])
    check(upstream_count(resp, name, 2) == 2,
          'DO=0 query answered from the DO=1 entry')
    G.expect_answer(udp(g, name), ['192.0.2.1'])
    check(upstream_count(resp, name) == 2, 'DO=0 repeat went upstream')


@suite.case
def test_cache_size_zero_turns_it_off(s):
    resp = responder(s)
    g = gw(s, extra_args=['--cache-size', '0'])
    name = 'off.example.test'
    G.expect_answer(udp(g, name), ['192.0.2.1'])
    G.expect_answer(udp(g, name), ['192.0.2.1'])
    check(upstream_count(resp, name, 2) == 2,
          'with --cache-size 0 the upstream saw %d queries, want 2' %
          len(resp.records(name)))
    check(g.stop() == 0, 'exit status')


@suite.case
def test_servfail_not_cached(s):
    g, resp = shared_gw(s), responder(s)
    name = 'servfail.example.test'
    G.expect_answer(udp(g, name), [], status='SERVFAIL')
    G.expect_answer(udp(g, name), [], status='SERVFAIL')
    check(upstream_count(resp, name, 2) == 2, 'SERVFAIL was cached')


@suite.case
def test_truncated_answer_not_cached_full_one_is(s):
    g, resp = shared_gw(s), responder(s)
    # UDP upstream answers TC=1, the gateway fetches it over TCP: the full
    # answer is cached (the UDP client gets it truncated to its buffer size
    # by the finish path, the cache keeps the whole)
    name = 'size-5000.example.test'
    r1 = dot(g, name, 'TXT')
    check(r1.status == 'NOERROR' and len(r1.answers('TXT')) > 3, 'first', r1.describe())
    r2 = dot(g, name, 'TXT')
    check(r2.status == 'NOERROR' and r2.answers('TXT') == r1.answers('TXT'),
          'cached copy differs', r2.describe())
    recs = upstream_count(resp, name, 2)
    check(recs == 2, 'upstream saw %d messages, want 2 (UDP TC=1 + TCP)' % recs)
    # a UDP client with a small buffer: TC=1 from the gateway, never an
    # entry that would truncate the stream clients
    r3 = udp(g, name, 'TXT', extra=['+bufsize=1232', '+ignore'])
    check('tc' in r3.flags, 'UDP answer not truncated', r3.describe())


@suite.case
def test_serve_stale_when_upstream_dies(s):
    resp = G.ResponderProc().start()
    try:
        stale = gw(s, resp, config={'cache': {'serve_stale': True, 'max_ttl': 2,
                                              'stale_ttl': 60}})
        fresh_only = gw(s, resp, config={'cache': {'max_ttl': 2}})
        name = 'stale.example.test'
        G.expect_answer(udp(stale, name, extra=['+edns']), ['192.0.2.1'])
        G.expect_answer(udp(fresh_only, name), ['192.0.2.1'])
        resp.stop()
        time.sleep(2.3)  # past max_ttl: both entries expired
        r = udp(stale, name, extra=['+edns'])
        G.expect_answer(r, ['192.0.2.1'])
        check(ttls(r, 'A') == [30], 'stale TTL %s, want [30] (RFC 8767)' % ttls(r, 'A'),
              r.describe())
        check(re.search(r'EDE: 3\b', r.out) is not None,
              'no Extended DNS Error 3 (Stale Answer)', r.describe())
        G.expect_answer(udp(fresh_only, name), [], status='SERVFAIL')
        check(stale.stop() == 0, 'exit status')
        check(fresh_only.stop() == 0, 'exit status')
    finally:
        resp.stop()


if __name__ == '__main__':
    suite.main()
