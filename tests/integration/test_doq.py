#!/usr/bin/python3
"""DNS-over-QUIC front-end (RFC 9250) of the real dnsgw binary.

Clients: trixie's kdig 3.4 +quic (tests/integration/trixie-chroot.sh builds
the chroot once and caches it in .deps/trixie-chroot) and our own
tests/tools/doq_client, which breaks the protocol on purpose. Upstream: the
scripted responder (slow-NNN names for cancellation cases).

Run: /usr/bin/python3 tests/integration/test_doq.py --binary build/dnsgw
"""

import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import doqtest as Q  # noqa: E402
import gwtest as G  # noqa: E402
from gwtest import check  # noqa: E402

suite = G.Suite('dnsgw DoQ integration tests')

STREAM_TIMEOUT_MS = 800
DOQ_PROTOCOL_ERROR = 0x2
DOQ_REQUEST_CANCELLED = 0x3
DOQ_EXCESSIVE_LOAD = 0x4


def responder(s):
    return s.fixture('responder', lambda: G.ResponderProc().start())


def make_gw(s, doq_conf=None, limits=None, name='gw'):
    def make():
        r = responder(s)
        port = G.free_port()
        conf = {
            'listen': ['doq://127.0.0.1:%d' % port],
            'log': {'level': 'debug'},
            'doq': dict({'stream_timeout_ms': STREAM_TIMEOUT_MS,
                         'idle_timeout_ms': 5000}, **(doq_conf or {})),
        }
        if limits:
            conf['limits'] = limits
        g = G.Gateway(s.binary, ['udp://127.0.0.1:%d' % r.port], dot=False,
                      config=conf)
        g.doq = port
        g.start()
        time.sleep(0.1)
        return g
    return s.fixture(name, make)


def gw(s):
    return make_gw(s)


def gw_retry(s):
    return make_gw(s, {'retry': 'always'}, name='gw_retry')


def gw_cap(s):
    return make_gw(s, limits={'max_conns_per_client': 2}, name='gw_cap')


def one(s, g, case, **kw):
    res = Q.doq_client(s.binary, g.doq, case, **kw)
    check(len(res) >= 1, 'no connection result')
    return res[0]


def assert_serving(s, g):
    r = one(s, g, 'normal', n=2)
    check(r['handshake'] and r['answers'] == 2,
          'gateway stopped serving after the case: %s' % r)


def wait_baseline(g, timeout=6.0):
    """Every DoQ connection, stream and in-flight query gone."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        ga = Q.gauges(g)
        if ga and ga['conns'] == 0 and ga['streams'] == 0 and ga['inflight'] == 0:
            return
        time.sleep(0.1)
    check(False, 'DoQ gauges not back to zero: %s' % Q.gauges(g))


# --------------------------------------------------------------- interop

@suite.case(timeout=600)
def test_kdig_quic_answers_on_one_connection(s):
    if not Q.chroot_ready():
        check(False, 'trixie chroot unavailable (needs root, debootstrap '
              'and the Debian archive): tests/integration/trixie-chroot.sh')
    g = gw(s)
    before = len(g.lines_matching('connection freed'))
    rc, out = Q.kdig_quic(g.doq, ['+keepopen', 'one.example.test', 'A',
                                  'two.example.test', 'AAAA',
                                  'three.example.test', 'A'])
    check(rc == 0, 'kdig +quic failed', out)
    ans = Q.kdig_answers(out)
    check(('one.example.test.', 'A', '192.0.2.1') in ans and
          ('two.example.test.', 'AAAA', '2001:db8::1') in ans and
          ('three.example.test.', 'A', '192.0.2.1') in ans,
          'wrong answers %s' % ans, out)
    check(out.count('(QUIC)') == 3, 'not three QUIC answers', out)
    wait_baseline(g)
    after = len(g.wait_lines('connection freed', before))
    check(after - before == 1, 'kdig used %d connections, want 1' %
          (after - before))


@suite.case(timeout=120)
def test_kdig_quic_padding(s):
    if not Q.chroot_ready():
        check(False, 'trixie chroot unavailable')
    g = gw(s)
    rc, out = Q.kdig_quic(g.doq, ['+padding', 'pad.example.test'])
    check(rc == 0 and 'Received 468 B' in out,
          'padded answer is not 468 bytes (RFC 8467)', out)


# --------------------------------------------------- protocol errors (0x2)

def protocol_error_case(case):
    def fn(s):
        g = gw(s)
        r = one(s, g, case)
        check(r['handshake'], 'no handshake: %s' % r)
        check(r['close_type'] == 'application' and
              r['close_code'] == DOQ_PROTOCOL_ERROR and not r['closed_by_us'],
              'want DOQ_PROTOCOL_ERROR close, got %s' % r)
        check(r['answers'] == 0, 'answered a bad stream: %s' % r)
        assert_serving(s, g)
        wait_baseline(g)
    fn.__name__ = 'test_%s_is_protocol_error' % case.replace('-', '_')
    suite.case(fn)


for _c in ('nonzero-id', 'early-fin', 'extra-data', 'two-queries',
           'keepalive'):
    protocol_error_case(_c)


# --------------------------------------------------------- well-formed odd

def served_case(case, n=1, extra=()):
    def fn(s):
        g = gw(s)
        r = one(s, g, case, n=n, extra=extra)
        check(r['answers'] == n and r['bad_answers'] == 0 and
              r['close_type'] == 'none',
              'want %d answers, got %s' % (n, r))
        wait_baseline(g)
    fn.__name__ = 'test_%s_is_served' % case.replace('-', '_')
    suite.case(fn)


served_case('split-prefix')
served_case('one-byte')
served_case('tiny-window', extra=('-w', '8'))


@suite.case
def test_stream_limit_16_grows_one_at_a_time(s):
    g = gw(s)
    r = one(s, g, 'streams', n=40)
    check(r['answers'] == 40, 'not all 40 answered: %s' % r)
    check(r['max_open'] == 16, 'client could open %d streams at once, want '
          '16' % r['max_open'])
    wait_baseline(g)


@suite.case
def test_uni_streams_not_allowed(s):
    g = gw(s)
    r = one(s, g, 'uni')
    check(r['uni_limit'] == 0, 'initial_max_streams_uni is %s, want 0' %
          r['uni_limit'])
    check(r['uni_rv'] == -206, 'client could open a uni stream (rv %d)' %
          r['uni_rv'])
    check(r['answers'] == 1, 'bidi query not served: %s' % r)


@suite.case
def test_alpn_other_than_doq_refused(s):
    g = gw(s)
    r = one(s, g, 'bad-alpn', extra=('-a', 'dot'))
    # CRYPTO_ERROR 0x100 + no_application_protocol(120)
    check(not r['handshake'] and r['close_type'] == 'transport' and
          r['close_code'] == 0x178, 'want CRYPTO_ERROR 0x178, got %s' % r)
    assert_serving(s, g)


@suite.case
def test_tls_message_after_handshake_closes(s):
    """The TLS object is freed once the handshake is done (docs/doq.md): a
    client that still sends TLS data (a KeyUpdate in a 1-RTT CRYPTO frame,
    forbidden by RFC 9001 6) is closed with CRYPTO_ERROR 0x10a
    (unexpected_message) after its query was answered; others are
    served and nothing is left behind."""
    g = gw(s)
    r = one(s, g, 'post-crypto')
    check(r['handshake'] and r['answers'] == 1, 'query not answered: %s' % r)
    check(r['close_type'] == 'transport' and r['close_code'] == 0x10a,
          'want CRYPTO_ERROR 0x10a, got %s' % r)
    assert_serving(s, g)
    wait_baseline(g)


# ------------------------------------------------------- cancellation

def cancel_case(case):
    def fn(s):
        g = gw(s)
        n0 = len(g.lines_matching('query abandoned'))
        r = one(s, g, case)
        codes = [(x['kind'], x['code']) for x in r['resets']
                 if x['stream'] == 0]
        check(('reset', DOQ_REQUEST_CANCELLED) in codes,
              'stream 0 not reset with DOQ_REQUEST_CANCELLED: %s' % r)
        check(r['answers'] == 1, 'second query not answered: %s' % r)
        n1 = len(g.wait_lines('query abandoned', n0))
        check(n1 > n0, 'the slow query was not abandoned', g.log_tail())
        wait_baseline(g)
    fn.__name__ = 'test_%s_cancels_the_query' % case.replace('-', '_')
    suite.case(fn)


cancel_case('reset')
cancel_case('stop-sending')


@suite.case
def test_dangling_stream_reaped(s):
    g = gw(s)
    r = one(s, g, 'dangling')
    check(any(x['code'] == DOQ_REQUEST_CANCELLED for x in r['resets']),
          'dangling stream not reset: %s' % r)
    check(r['answers'] == 1, 'connection not usable after the reap: %s' % r)
    wait_baseline(g)


# ---------------------------------------------------------- QUIC duties

@suite.case
def test_amplification_limit_3x(s):
    g = gw(s)
    r = one(s, g, 'amplify')
    check(r['bytes_sent'] > 0 and r['bytes_recv'] > 0, 'no exchange: %s' % r)
    check(r['bytes_recv'] <= 3 * r['bytes_sent'],
          'sent %d to a silent address that sent %d' %
          (r['bytes_recv'], r['bytes_sent']))
    wait_baseline(g, timeout=8)


@suite.case
def test_retry_always(s):
    g = gw_retry(s)
    r = one(s, g, 'normal', n=2)
    check(r['retry'] and r['answers'] == 2, 'no Retry or no answers: %s' % r)


@suite.case
def test_small_initial_dropped(s):
    g = gw_retry(s)  # a Retry shows that the header was accepted
    dcid, scid = os.urandom(8), os.urandom(8)
    got = Q.udp_exchange(g.doq, [Q.long_header(1, dcid, scid, size=1200)])
    check(any(Q.parse_retry(p) for p in got), 'control: no Retry for a '
          '1200-byte Initial')
    got = Q.udp_exchange(g.doq, [Q.long_header(1, dcid, scid, size=1199)])
    check(got == [], 'answered an Initial in a 1199-byte datagram')


@suite.case
def test_retry_token_bound_to_address(s):
    g = gw_retry(s)
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dcid, scid = os.urandom(8), os.urandom(8)
    got = Q.udp_exchange(g.doq, [Q.long_header(1, dcid, scid)], sock=a)
    rs = [Q.parse_retry(p) for p in got if Q.parse_retry(p)]
    check(rs, 'no Retry')
    rscid, token = rs[0]
    # the token from another port: INVALID_TOKEN close (an Initial), no Retry
    got = Q.udp_exchange(g.doq, [Q.long_header(1, rscid, scid, token=token)],
                         sock=b)
    check(got and all(not Q.parse_retry(p) and (p[0] >> 4) & 3 == 0
                      for p in got),
          'token accepted or retried from another address: %r' %
          [p[:8].hex() for p in got])
    a.close()
    b.close()


@suite.case
def test_version_negotiation(s):
    g = gw(s)
    dcid, scid = os.urandom(8), os.urandom(8)
    got = Q.udp_exchange(g.doq, [Q.long_header(0x1a2a3a4a, dcid, scid)])
    check(len(got) == 1, 'want one Version Negotiation packet, got %d' %
          len(got))
    p = got[0]
    check(p[0] & 0x80 and p[1:5] == b'\0\0\0\0', 'not a VN packet')
    i = 5
    dl = p[i]
    check(p[i + 1:i + 1 + dl] == scid, 'VN DCID is not our SCID')
    i += 1 + dl
    sl = p[i]
    i += 1 + sl
    vers = [struct.unpack('!I', p[j:j + 4])[0] for j in range(i, len(p), 4)]
    check(1 in vers, 'QUIC v1 not offered: %s' % vers)


@suite.case
def test_stateless_reset_rate_limited(s):
    g = gw(s)
    pkt = bytes([0x40 | 0x01]) + os.urandom(18) + os.urandom(80)
    got = Q.udp_exchange(g.doq, [pkt], wait=0.5)
    check(len(got) == 1, 'want one stateless reset, got %d' % len(got))
    check(len(got[0]) < len(pkt) and got[0][0] & 0xc0 == 0x40,
          'reset is not a smaller short-header packet')
    burst = [bytes([0x41]) + os.urandom(98) for _ in range(600)]
    got = Q.udp_exchange(g.doq, burst, wait=0.5)
    check(len(got) <= 400, '%d resets for 600 packets in a burst: not rate '
          'limited' % len(got))


@suite.case
def test_per_client_cap_excessive_load(s):
    g = gw_cap(s)
    res = Q.doq_client(s.binary, g.doq, 'reset', conns=3)
    loads = [r for r in res if r['close_type'] == 'application' and
             r['close_code'] == DOQ_EXCESSIVE_LOAD]
    served = [r for r in res if r['answers'] == 1]
    check(len(loads) == 1 and len(served) == 2,
          'want 1 DOQ_EXCESSIVE_LOAD and 2 served: %s' % res)
    wait_baseline(g)
    assert_serving(s, g)


@suite.case
def test_gauges_back_to_zero(s):
    for g in (gw(s),):
        wait_baseline(g)


if __name__ == '__main__':
    sys.exit(suite.main())
