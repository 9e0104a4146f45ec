#!/usr/bin/python3
"""DoQ 0-RTT (RFC 9250 4.5, REQUIREMENTS.md "DoQ"): off by default; with
doq.early_data on, a resumed client's 0-RTT QUERY is answered, any other
opcode received in 0-RTT gets REFUSED with Extended DNS Error 26 (Too
Early).

Client: tests/tools/doq_client -c early: a first connection fetches a
session ticket, a second resumes it and sends its query (EDNS, opcode -o)
before the handshake ends. kdig 3.4 cannot send 0-RTT.

Run: /usr/bin/python3 tests/integration/test_doq_early.py --binary build/dnsgw
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import doqtest as Q  # noqa: E402
import gwtest as G  # noqa: E402
from gwtest import check  # noqa: E402

suite = G.Suite('dnsgw DoQ 0-RTT integration tests')

OP_QUERY, OP_NOTIFY, OP_UPDATE = 0, 4, 5
RCODE_NOERROR, RCODE_NOTIMP, RCODE_REFUSED = 0, 4, 5
EDE_TOO_EARLY = 26
TLS_EARLY_ACCEPTED = 2  # WOLFSSL_EARLY_DATA_ACCEPTED


def responder(s):
    return s.fixture('responder', lambda: G.ResponderProc().start())


def make_gw(s, early, name):
    def make():
        r = responder(s)
        port = G.free_port()
        conf = {
            'listen': ['doq://127.0.0.1:%d' % port],
            'log': {'level': 'debug'},
            'doq': {'idle_timeout_ms': 5000},
        }
        if early is not None:
            conf['doq']['early_data'] = early
        g = G.Gateway(s.binary, ['udp://127.0.0.1:%d' % r.port], dot=False,
                      config=conf)
        g.doq = port
        g.start()
        time.sleep(0.1)
        return g
    return s.fixture(name, make)


def early(s, g, opcode):
    res = Q.doq_client(s.binary, g.doq, 'early',
                       extra=('-o', str(opcode), '-q', 'example.test'))
    check(len(res) == 1, 'want one result: %s' % res)
    r = res[0]
    check(r['handshake'] and r['resumed'], 'no resumed handshake: %s' % r)
    check(r['answers'] == 1, 'no answer: %s' % r)
    return r


def wait_baseline(g, timeout=8.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        ga = Q.gauges(g)
        if ga and ga['conns'] == 0 and ga['streams'] == 0 and ga['inflight'] == 0:
            return
        time.sleep(0.1)
    check(False, 'DoQ gauges not back to zero: %s' % Q.gauges(g))


@suite.case
def test_default_no_early_data(s):
    g = make_gw(s, None, 'gw_default')
    r = early(s, g, OP_NOTIFY)
    # the ticket allows no early data: the query waits for 1-RTT
    check(not r['early_sent'] and r['tls_early_status'] != TLS_EARLY_ACCEPTED,
          '0-RTT used although doq.early_data is off: %s' % r)
    check(r['ede'] != EDE_TOO_EARLY, 'Too Early outside 0-RTT: %s' % r)
    check(r['rcode'] == RCODE_NOTIMP, 'NOTIFY after the handshake: %s' % r)
    r = early(s, g, OP_QUERY)
    check(not r['early_sent'] and r['rcode'] == RCODE_NOERROR,
          'resumed QUERY: %s' % r)


@suite.case
def test_early_query_answered(s):
    g = make_gw(s, True, 'gw_early')
    r = early(s, g, OP_QUERY)
    check(r['early_sent'] and r['tls_early_status'] == TLS_EARLY_ACCEPTED,
          '0-RTT not accepted: %s' % r)
    check(r['rcode'] == RCODE_NOERROR and r['ede'] == -1,
          'a QUERY in 0-RTT must be answered: %s' % r)


@suite.case
def test_early_notify_update_too_early(s):
    g = make_gw(s, True, 'gw_early')
    for op in (OP_NOTIFY, OP_UPDATE):
        r = early(s, g, op)
        check(r['early_sent'] and r['tls_early_status'] == TLS_EARLY_ACCEPTED,
              '0-RTT not accepted: %s' % r)
        check(r['rcode'] == RCODE_REFUSED and r['ede'] == EDE_TOO_EARLY,
              'opcode %d in 0-RTT: want REFUSED + EDE 26, got %s' % (op, r))
    # still serving, state back to zero
    r = early(s, g, OP_QUERY)
    check(r['rcode'] == RCODE_NOERROR, 'not serving after: %s' % r)
    wait_baseline(g)


if __name__ == '__main__':
    sys.exit(suite.main())
