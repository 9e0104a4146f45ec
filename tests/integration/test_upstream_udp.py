#!/usr/bin/python3
"""Shared upstream UDP sockets (upstream/udp.c) seen from the upstream's
side: a handful of source ports carry many queries, a socket is replaced by
one on a new port after its query bound (1024), idle sockets are closed, and
forged answers on a shared socket are still ignored while other queries on
it get their answers.

Run: /usr/bin/python3 tests/integration/test_upstream_udp.py --binary build/dnsgw
"""

import os
import random
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dnswire as W  # noqa: E402
import gwtest as G  # noqa: E402
from gwtest import check  # noqa: E402

suite = G.Suite('dnsgw shared upstream UDP sockets')

SOCKS = 4            # sockets per upstream and worker (udp.c UDP_SOCKS)
MAX_QUERIES = 1024   # queries per socket before it is replaced


def responder(s):
    return s.fixture('responder', lambda: G.ResponderProc().start())


def gw(s, tag):
    def make():
        return G.Gateway(s.binary, ['udp://127.0.0.1:%d' % responder(s).port],
                         dot=False, dns=True,
                         config={'upstream': {'timeout_ms': 1000, 'attempts': 1},
                                 'cache': {'size_bytes': 0}}).start()
    return s.fixture('gw_' + tag, make)


def tag():
    return 'u%d' % random.randint(0, 10**9)


def udp_ports(resp, suffix):
    """Source ports of the UDP queries for names ending in suffix, in order."""
    return [int(r['peer'].rsplit(':', 1)[1]) for r in resp.records()
            if r.get('transport') == 'udp' and
            (r.get('qname') or '').endswith(suffix + '.')]


def ask(port, names, timeout=3.0):
    """Sends the queries one after the other over one client socket."""
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(timeout)
    try:
        for i, n in enumerate(names):
            c.sendto(W.build_query(n, qid=i & 0xffff), ('127.0.0.1', port))
            while True:
                m = W.parse(c.recvfrom(65535)[0])
                if m.id == i & 0xffff:
                    break
            check(m.a_records() == ['192.0.2.1'], '%s: %r' % (n, m))
    finally:
        c.close()


@suite.case
def test_few_ports_many_queries(s):
    g = gw(s, 'reuse')
    base = g.snapshot()
    t = tag()
    names = ['q%d.%s.example.test' % (i, t) for i in range(40)]
    ask(g.dns, names)
    ports = udp_ports(responder(s), '%s.example.test' % t)
    check(len(ports) == 40, '%d queries reached the upstream' % len(ports))
    check(len(set(ports)) <= SOCKS,
          '40 queries used %d source ports (want <= %d): a socket per query?'
          % (len(set(ports)), SOCKS))
    # every socket of the set in turn: each port carries several queries
    check(len(set(ports)) >= 2, 'one fixed port for everything: %s' % set(ports))
    # idle sockets close (1 s): no fd left behind
    g.expect_baseline(base, timeout=4.0, what='after the queries')


@suite.case(timeout=120)
def test_socket_replaced_after_query_bound(s):
    g = gw(s, 'recycle')
    t = tag()
    n = SOCKS * MAX_QUERIES + 4 * SOCKS
    names = ['r%d.%s.example.test' % (i, t) for i in range(n)]
    ask(g.dns, names)
    ports = udp_ports(responder(s), '%s.example.test' % t)
    check(len(ports) == n, '%d of %d queries reached the upstream' % (len(ports), n))
    per = {}
    for p in ports:
        per[p] = per.get(p, 0) + 1
    check(max(per.values()) <= MAX_QUERIES,
          'a source port carried %d queries (bound %d)' % (max(per.values()), MAX_QUERIES))
    check(len(per) > SOCKS, 'no socket was replaced: ports %s' % per)


@suite.case
def test_forged_answers_ignored_on_shared_socket(s):
    """wrongid/wrongq answers arrive on a socket other queries share: the
    forged ones are dropped, the queries on the same sockets are answered."""
    g = gw(s, 'forged')
    t = tag()
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(3.0)
    try:
        bad = ['wrongid.%s.example.test' % t, 'wrongq.%s.example.test' % t]
        good = ['ok%d.%s.example.test' % (i, t) for i in range(8)]
        for i, n in enumerate(bad + good):
            c.sendto(W.build_query(n, qid=100 + i), ('127.0.0.1', g.dns))
        got = {}
        deadline = time.monotonic() + 3.0
        while len(got) < len(bad) + len(good) and time.monotonic() < deadline:
            try:
                m = W.parse(c.recvfrom(65535)[0])
            except socket.timeout:
                break
            got[m.id] = m
    finally:
        c.close()
    for i, n in enumerate(good):
        m = got.get(100 + len(bad) + i)
        check(m is not None and m.a_records() == ['192.0.2.1'], '%s: %r' % (n, m))
    for i, n in enumerate(bad):
        m = got.get(100 + i)
        check(m is not None and m.rcode == 2,
              '%s: want SERVFAIL after the timeout, got %r' % (n, m))
        check(m is None or not ({'192.0.2.66', '192.0.2.67'} & set(m.a_records())),
              '%s: forged answer accepted' % n)


@suite.case
def test_sigterm_clean_exit(s):
    G.stop_gateway_fixtures(s)


if __name__ == '__main__':
    sys.exit(suite.main())
