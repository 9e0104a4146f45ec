#!/usr/bin/python3
"""DoQ connection churn against the per-client cap: a connection in its
closing or draining period (RFC 9000 10.2) gives its per-client slot back
at once, so a client that closes one connection and opens the next is
never refused with DOQ_EXCESSIVE_LOAD for connections it already closed
(that doubled doq_client's handshake count against the answers in
bench/doq.sh before). The cap itself still holds for open connections.

Run: /usr/bin/python3 tests/integration/test_doq_churn.py --binary build/dnsgw
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import doqtest as Q  # noqa: E402
import gwtest as G  # noqa: E402
from gwtest import check  # noqa: E402

suite = G.Suite('dnsgw DoQ connection churn tests')

DOQ_EXCESSIVE_LOAD = 0x4


def gw_cap2(s):
    def make():
        r = s.fixture('responder', lambda: G.ResponderProc().start())
        port = G.free_port()
        conf = {
            'listen': ['doq://127.0.0.1:%d' % port],
            'log': {'level': 'debug'},
            'doq': {'idle_timeout_ms': 5000, 'retry': 'never'},
            'limits': {'max_conns_per_client': 2},
        }
        g = G.Gateway(s.binary, ['udp://127.0.0.1:%d' % r.port], dot=False,
                      config=conf)
        g.doq = port
        g.start()
        time.sleep(0.1)
        return g
    return s.fixture('gw_cap2', make)


@suite.case
def test_closed_connections_free_their_slot(s):
    g = gw_cap2(s)
    # two connections at a time (the cap), each: handshake, one query,
    # close, and at once the next one, for 2 seconds
    res = Q.doq_client(s.binary, g.doq, 'handshakes', conns=2,
                       extra=('-d', '2', '-Q', '-q', 'example.test'))
    summ = [r for r in res if r.get('summary')]
    check(len(summ) == 1, 'no summary: %s' % res)
    sm = summ[0]
    check(sm['handshakes'] >= 10, 'too few handshakes: %s' % sm)
    check(sm['refused'] == 0 and sm['answers'] == sm['handshakes'],
          'connections refused while the client held at most the cap: %s'
          % sm)


@suite.case
def test_cap_still_refuses_open_connections(s):
    g = gw_cap2(s)
    res = Q.doq_client(s.binary, g.doq, 'idle', conns=3,
                       extra=('-d', '1', '-t', '5'))
    conns = [r for r in res if 'conn' in r]
    loads = [r for r in conns if r['close_type'] == 'application' and
             r['close_code'] == DOQ_EXCESSIVE_LOAD]
    check(len(loads) == 1, 'want 1 of 3 idle connections refused: %s' % res)


if __name__ == '__main__':
    sys.exit(suite.main())
