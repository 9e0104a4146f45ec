#!/usr/bin/python3
"""PROXY protocol v2 on datagram listeners (docs/policy.md): on a udp:// or
doq:// listener named in policy.proxy_protocol.listeners, every datagram of
a trusted peer starts with a header (as dnsdist and HAProxy send it); the
client it names is the client for the ACL, the rate limits, the
connections-per-client cap, EDNS Client Subnet and the query log, and the
answers go back to the proxy, bare. A trusted peer's datagram without a
valid header is dropped; other peers are plain clients.

The trusted proxy is 127.0.0.1; 127.0.0.2 is an untrusted peer (loopback
holds the whole 127/8). DoQ through the proxy: tests/tools/doq_client -P.

Run: /usr/bin/python3 tests/integration/test_proxy_dgram.py --binary build/dnsgw
"""

import json
import os
import re
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import doqtest as Q  # noqa: E402
import dnswire as W  # noqa: E402
import gwtest as G  # noqa: E402
from gwtest import check  # noqa: E402

suite = G.Suite('dnsgw PROXY v2 on udp and doq')

SIG = b'\r\n\r\n\x00\r\nQUIT\n'
DOQ_EXCESSIVE_LOAD = 0x4


def responder(s):
    return s.fixture('responder', lambda: G.ResponderProc().start())


def certs(s):
    return s.fixture('certs', lambda: G.gen_cert(G.tmpdir('dnsgw-ppd-')))


class ProxyGateway(G.Gateway):
    """A gateway from a JSON config (lists of mappings need no YAML writer)
    with named listeners: self.port[name] for (name, scheme) in kinds; conf
    is a function of those ports."""

    def __init__(self, s, kinds, conf):
        super().__init__(s.binary, ['udp://127.0.0.1:%d' % responder(s).port],
                         dot=False, config={})
        self.port = {name: G.free_port() for name, _ in kinds}
        self.listen = ['%s://127.0.0.1:%d' % (scheme, self.port[name])
                       for name, scheme in kinds]
        self.url = {name: '%s://127.0.0.1:%d' % (scheme, self.port[name])
                    for name, scheme in kinds}
        self.config = conf(self.url)
        if any(scheme == 'doq' for _, scheme in kinds):
            self.cert, self.key = certs(s)

    def command(self):
        conf = dict(self.config)
        conf.setdefault('listen', self.listen)
        conf.setdefault('upstream', {'servers': self.upstreams})
        if self.cert:
            conf.setdefault('tls', {'cert': self.cert, 'key': self.key})
        conf.setdefault('threads', 1)
        conf.setdefault('log', {'level': 'debug', 'queries': True})
        self.config_path = os.path.join(self.dir, 'dnsgw.yaml')
        with open(self.config_path, 'w') as f:
            json.dump(conf, f)
        return [self.binary, '-c', self.config_path] + self.extra_args

    def logged(self, qname):
        """(client, transport) of each query-log line for qname."""
        out = []
        for l in self.lines_matching(r'msg="query" .*qname=%s ' %
                                     re.escape(qname)):
            c = re.search(r'client=(\S+)', l)
            t = re.search(r'transport=(\S+)', l)
            out.append((c and c.group(1), t and t.group(1)))
        return out

    def bad_headers(self):
        return len(self.lines_matching(r'msg="bad PROXY header"'))


# ------------------------------------------------------------- helpers

def hdr(client, sport=4242, dport=53, fam=None, local=False, cmd=0x21):
    """A PROXY v2 header (proxy-protocol.txt 2.2) naming client; UDP over
    IPv4 (0x12) or IPv6 (0x22) unless fam says otherwise."""
    if local:
        return SIG + bytes([0x20, 0x00]) + struct.pack('!H', 0)
    if ':' in client:
        block = socket.inet_pton(socket.AF_INET6, client) + \
            socket.inet_pton(socket.AF_INET6, '::1')
        fam = fam or 0x22
    else:
        block = socket.inet_aton(client) + socket.inet_aton('127.0.0.1')
        fam = fam or 0x12
    block += struct.pack('!HH', sport, dport)
    return SIG + bytes([cmd, fam]) + struct.pack('!H', len(block)) + block


def ask_raw(port, data, src='127.0.0.1', timeout=1.2):
    """One datagram from src; the raw answer or None."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    s.settimeout(timeout)
    try:
        s.sendto(data, ('127.0.0.1', port))
        return s.recv(65535)
    except socket.timeout:
        return None
    finally:
        s.close()


def q(name, **kw):
    return W.build_query(name, 'A', **kw)


def expect_ok(raw, query, what):
    """raw is a bare DNS answer to query (same ID), NOERROR 192.0.2.1."""
    check(raw is not None, '%s: no answer' % what)
    check(not raw.startswith(SIG), '%s: answer carries a PROXY header' % what)
    m = W.parse(raw)
    check(m.id == struct.unpack('!H', query[:2])[0] and m.qr,
          '%s: not the answer to the query: %r' % (what, m))
    check(m.rcode_name == 'NOERROR' and m.a_records() == ['192.0.2.1'],
          '%s: %r' % (what, m))


def wait_logged(g, qname, n=1, timeout=2.0):
    t0 = time.monotonic()
    while len(g.logged(qname)) < n and time.monotonic() - t0 < timeout:
        time.sleep(0.05)
    return g.logged(qname)


# ------------------------------------------------------------------ udp

def udp_gw(s):
    """open: PROXY, no ACL of its own; acl: PROXY, denies 192.0.2.0/24 and
    the proxy itself; plain: no PROXY (and tcp on it)."""
    return s.fixture('udp_gw', lambda: ProxyGateway(
        s, [('open', 'udp'), ('acl', 'udp'), ('plain', 'udp')],
        lambda u: {
            'policy': {
                'listener_acl': [{'listen': u['acl'], 'acl': [
                    'deny 192.0.2.0/24', 'deny 127.0.0.1', 'allow all']}],
                'proxy_protocol': {'listeners': [u['open'], u['acl']],
                                   'trusted': ['127.0.0.1/32']},
            }}).start())


@suite.case(timeout=60)
def test_udp_header_client_answered_and_logged(s):
    g = udp_gw(s)
    p = g.port['open']
    wire = q('ppd-v4.example.test')
    expect_ok(ask_raw(p, hdr('192.0.2.7') + wire), wire, 'IPv4 UDP header')
    wire6 = q('ppd-v6.example.test')
    expect_ok(ask_raw(p, hdr('2001:db8::7') + wire6), wire6,
              'IPv6 UDP header on an IPv4 socket')
    # a proxy that labels the flow TCP (0x11) is believed as well
    wt = q('ppd-tcpfam.example.test')
    expect_ok(ask_raw(p, hdr('198.51.100.11', fam=0x11) + wt), wt,
              'TCP-family header')
    # LOCAL (health check): the proxy is the client
    wl = q('ppd-local.example.test')
    expect_ok(ask_raw(p, hdr(None, local=True) + wl), wl, 'LOCAL')
    for qname, want in (('ppd-v4.example.test.', '192.0.2.7'),
                        ('ppd-v6.example.test.', '2001:db8::7'),
                        ('ppd-tcpfam.example.test.', '198.51.100.11'),
                        ('ppd-local.example.test.', '127.0.0.1')):
        got = wait_logged(g, qname)
        check(got == [(want, 'udp')], '%s logged as %r, want %s' %
              (qname, got, want))


@suite.case(timeout=60)
def test_udp_acl_judges_header_client(s):
    g = udp_gw(s)
    p = g.port['acl']
    # the proxy (127.0.0.1) is denied on this listener, the client it
    # names is not: answered
    w = q('ppd-acl-ok.example.test')
    expect_ok(ask_raw(p, hdr('198.51.100.7') + w), w, 'allowed client')
    # a denied client behind the allowed... proxy: dropped
    check(ask_raw(p, hdr('192.0.2.7') + q('ppd-acl-no.example.test'))
          is None, 'client 192.0.2.7 denied by the ACL was answered')
    check(g.lines_matching(r'msg="denied by acl" .*client=192\.0\.2\.7'),
          'no "denied by acl" line naming the header client')
    # LOCAL: the client is the proxy, which this ACL denies
    check(ask_raw(p, hdr(None, local=True) + q('ppd-acl-local.example.test'))
          is None, 'LOCAL from a denied proxy answered')
    time.sleep(0.2)
    check(not g.logged('ppd-acl-no.example.test.'), 'denied query logged')


@suite.case(timeout=60)
def test_udp_trusted_without_header_dropped(s):
    g = udp_gw(s)
    p = g.port['open']
    base = g.snapshot(settle=0.3)
    n0 = g.bad_headers()
    w = q('ppd-none.example.test')
    cut = hdr('192.0.2.8')
    for what, data in (
            ('plain DNS', w),
            ('garbage', os.urandom(60)),
            ('signature only', SIG + w),
            ('header cut short', cut[:20]),
            ('length past the datagram',
             cut[:14] + struct.pack('!H', 200) + cut[16:] + w),
            ('IPv4 block too short', SIG + bytes([0x21, 0x12]) +
             struct.pack('!H', 8) + cut[16:24] + w),
            ('version 1', b'PROXY UDP4 192.0.2.8 127.0.0.1 1 53\r\n' + w),
            ('unknown command', hdr('192.0.2.8', cmd=0x22) + w),
            ('header without a query', cut),
    ):
        check(ask_raw(p, data, timeout=0.6) is None,
              'trusted peer answered: %s' % what)
    time.sleep(0.2)
    # all but the last (a valid header, an empty payload) counted as bad
    check(g.bad_headers() - n0 == 8, '%d "bad PROXY header" lines, want 8' %
          (g.bad_headers() - n0))
    check(not g.logged('ppd-none.example.test.'), 'headerless query logged')
    # still serving: through the proxy and on the plain listener
    w = q('ppd-after.example.test')
    expect_ok(ask_raw(p, hdr('192.0.2.9') + w), w, 'after bad datagrams')
    w = q('ppd-plain.example.test')
    expect_ok(ask_raw(g.port['plain'], w), w, 'plain listener')
    g.expect_baseline(base, what='after bad datagrams')


@suite.case(timeout=60)
def test_udp_untrusted_peer_is_plain(s):
    g = udp_gw(s)
    p = g.port['open']
    # 127.0.0.2 is no proxy: its datagrams are DNS as they are
    w = q('ppd-untrusted.example.test')
    expect_ok(ask_raw(p, w, src='127.0.0.2'), w, 'plain query from .2')
    check(wait_logged(g, 'ppd-untrusted.example.test.') ==
          [('127.0.0.2', 'udp')], 'logged as %r' %
          g.logged('ppd-untrusted.example.test.'))
    # its header is not believed: the bytes are not a query
    raw = ask_raw(p, hdr('198.51.100.99') + q('ppd-spoof.example.test'),
                  src='127.0.0.2')
    check(raw is None or W.parse(raw).rcode_name != 'NOERROR',
          'untrusted header honoured: %r' % (raw and W.parse(raw)))
    time.sleep(0.2)
    check(not g.lines_matching(r'198\.51\.100\.99') and
          not g.logged('ppd-spoof.example.test.'),
          'spoofed client reached the pipeline')
    # a listener without PROXY takes no header, even from the proxy
    raw = ask_raw(g.port['plain'], hdr('198.51.100.98') +
                  q('ppd-plainhdr.example.test'))
    check(raw is None or W.parse(raw).rcode_name != 'NOERROR',
          'header believed on a listener without PROXY')
    check(not g.lines_matching(r'198\.51\.100\.98'), 'header client seen')


def rl_gw(s):
    return s.fixture('rl_gw', lambda: ProxyGateway(
        s, [('udp', 'udp')], lambda u: {
            'policy': {
                'ratelimit': {'qps': 3, 'qps_burst': 3, 'slip': 0},
                'ecs': {'add': True, 'ipv4_prefix': 24},
                'proxy_protocol': {'listeners': [u['udp']],
                                   'trusted': ['127.0.0.1/32']},
            }}).start())


@suite.case(timeout=60)
def test_udp_ratelimit_and_ecs_per_header_client(s):
    g = rl_gw(s)
    p = g.port['udp']
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(('127.0.0.1', 0))
    sock.settimeout(1.5)

    def burst(client, n):
        for i in range(n):
            sock.sendto(hdr(client) + q('ppd-rl%d.example.test' % i),
                        ('127.0.0.1', p))
        got = 0
        try:
            while True:
                sock.recv(4096)
                got += 1
        except socket.timeout:
            pass
        return got

    # one client's bucket holds 3: the rest dropped (slip 0) ...
    a = burst('198.51.100.1', 8)
    check(a == 3, '%d answers for client .1, want 3' % a)
    # ... while another client behind the same proxy has its own bucket
    b = burst('198.51.100.2', 3)
    check(b == 3, '%d answers for client .2, want 3 (bucket of the proxy?)'
          % b)
    sock.close()
    # the subnet added upstream is the header client's /24
    w = q('ppd-ecs.example.test')
    expect_ok(ask_raw(p, hdr('203.0.113.77') + w), w, 'ecs')
    recs = responder(s).wait_records('ppd-ecs.example.test')
    check(recs, 'upstream saw no query')
    opts = dict((c, h) for c, h in recs[-1]['opt']['options'])
    check(opts.get(8) == '00011800cb0071',
          'upstream ECS %r, want 00011800cb0071 (203.0.113/24)' % opts.get(8))


# ------------------------------------------------------------------ doq

def doq_gw(s):
    """proxy: PROXY, denies 192.0.2.0/24 and the proxy itself, Retry on
    (the token must be bound to the header's client); plain: no PROXY."""
    return s.fixture('doq_gw', lambda: ProxyGateway(
        s, [('proxy', 'doq'), ('plain', 'doq')], lambda u: {
            'doq': {'retry': 'always', 'idle_timeout_ms': 3000},
            'policy': {
                'listener_acl': [{'listen': u['proxy'], 'acl': [
                    'deny 192.0.2.0/24', 'deny 127.0.0.1', 'allow all']}],
                'proxy_protocol': {'listeners': [u['proxy']],
                                   'trusted': ['127.0.0.1/32']},
            }}).start())


def doq(s, port, extra, n=1, conns=1, timeout=4, name=None):
    args = list(extra) + (['-q', name] if name else [])
    return Q.doq_client(s.binary, port, 'normal', n=n, conns=conns,
                        timeout=timeout, extra=args)


def wait_doq_baseline(g, timeout=8.0):
    """Every DoQ connection, stream and in-flight query gone (idle
    timeout 3 s: doq_client leaves without closing)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        ga = Q.gauges(g)
        if ga and ga['conns'] == 0 and ga['streams'] == 0 and \
                ga['inflight'] == 0:
            return
        time.sleep(0.1)
    check(False, 'DoQ gauges not back to zero: %s' % Q.gauges(g))


@suite.case(timeout=120)
def test_doq_through_proxy_header(s):
    g = doq_gw(s)
    p = g.port['proxy']
    res = doq(s, p, ['-P', '198.51.100.20'], n=2, name='ppd-doq.example.test')
    r = res[0]
    check(r['handshake'] and r['retry'] and r['answers'] == 2,
          'DoQ through the PROXY header (with Retry) failed: %s' % r)
    got = wait_logged(g, 'ppd-doq.example.test.', n=2)
    check(got == [('198.51.100.20', 'doq')] * 2,
          'logged as %r, want 198.51.100.20 twice' % got)
    # the proxy itself (127.0.0.1) is denied on this listener: only the
    # header's client was judged; a denied client gets nothing
    res = doq(s, p, ['-P', '192.0.2.9'], timeout=2,
              name='ppd-doq-denied.example.test')
    check(not res[0]['handshake'] and res[0]['bytes_recv'] == 0,
          'denied client behind the proxy got an answer: %s' % res[0])
    check(g.lines_matching(r'msg="denied by acl" .*client=192\.0\.2\.9'),
          'no "denied by acl" line naming the header client')


@suite.case(timeout=120)
def test_doq_trusted_without_header_gets_nothing(s):
    g = doq_gw(s)
    p = g.port['proxy']
    base = g.snapshot(settle=0.3)
    n0 = g.bad_headers()
    res = doq(s, p, [], timeout=2)
    check(not res[0]['handshake'] and res[0]['bytes_recv'] == 0,
          'headerless DoQ from the trusted proxy got something: %s' % res[0])
    check(g.bad_headers() > n0, 'no "bad PROXY header" line')
    # still serving through the proxy and on the plain listener
    r = doq(s, p, ['-P', '198.51.100.21'])[0]
    check(r['handshake'] and r['answers'] == 1, 'proxy path stopped: %s' % r)
    r = doq(s, g.port['plain'], [])[0]
    check(r['handshake'] and r['answers'] == 1, 'plain DoQ failed: %s' % r)
    wait_doq_baseline(g)
    g.expect_baseline(base, what='after headerless DoQ')


@suite.case(timeout=120)
def test_doq_untrusted_peer_is_plain(s):
    g = doq_gw(s)
    p = g.port['proxy']
    r = doq(s, p, ['-b', '127.0.0.2'], name='ppd-doq-plain.example.test')[0]
    check(r['handshake'] and r['answers'] == 1,
          'plain DoQ from untrusted .2 failed: %s' % r)
    check(wait_logged(g, 'ppd-doq-plain.example.test.') ==
          [('127.0.0.2', 'doq')], 'logged as %r' %
          g.logged('ppd-doq-plain.example.test.'))
    # its header is not believed (the datagrams are not QUIC then)
    r = doq(s, p, ['-b', '127.0.0.2', '-P', '198.51.100.22'], timeout=2)[0]
    check(not r['handshake'], 'untrusted PROXY header honoured: %s' % r)
    check(not g.lines_matching(r'198\.51\.100\.22'), 'header client seen')


@suite.case(timeout=60)
def test_doq_retry_token_bound_to_header_client(s):
    g = doq_gw(s)
    p = g.port['proxy']
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(('127.0.0.1', 0))
    dcid, scid = os.urandom(8), os.urandom(8)
    got = Q.udp_exchange(p, [hdr('198.51.100.30', dport=p) +
                             Q.long_header(1, dcid, scid)], sock=sock)
    rs = [Q.parse_retry(x) for x in got if Q.parse_retry(x)]
    check(rs, 'no Retry for an Initial behind a header')
    rscid, token = rs[0]
    # the same proxy socket, another client in the header: the token does
    # not admit it (INVALID_TOKEN close, an Initial, no Retry)
    got = Q.udp_exchange(p, [hdr('198.51.100.31', dport=p) +
                             Q.long_header(1, rscid, scid, token=token)],
                         sock=sock)
    check(got and all(not Q.parse_retry(x) and (x[0] >> 4) & 3 == 0
                      for x in got),
          'token for .30 accepted or retried for .31: %r' %
          [x[:8].hex() for x in got])
    sock.close()


def doq_cap_gw(s):
    return s.fixture('doq_cap_gw', lambda: ProxyGateway(
        s, [('proxy', 'doq')], lambda u: {
            'limits': {'max_conns_per_client': 1},
            'doq': {'idle_timeout_ms': 3000},
            'policy': {'proxy_protocol': {'listeners': [u['proxy']],
                                          'trusted': ['127.0.0.1/32']}},
        }).start())


@suite.case(timeout=120)
def test_doq_conn_cap_per_header_client(s):
    g = doq_cap_gw(s)
    p = g.port['proxy']
    # two connections of one client behind the proxy: one over the cap
    res = doq(s, p, ['-P', '198.51.100.40'], conns=2)
    loads = [r for r in res if r['close_type'] == 'application' and
             r['close_code'] == DOQ_EXCESSIVE_LOAD]
    served = [r for r in res if r['answers'] == 1]
    check(len(loads) == 1 and len(served) == 1,
          'want 1 served and 1 DOQ_EXCESSIVE_LOAD: %s' % res)
    # two clients behind the same proxy: one slot each, both served
    res = doq(s, p, ['-P', '198.51.100.50+'], conns=2)
    check(len(res) == 2 and all(r['answers'] == 1 for r in res),
          'two clients behind one proxy not both served: %s' % res)
    wait_doq_baseline(g)


if __name__ == '__main__':
    suite.main()
