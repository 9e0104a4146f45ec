#!/usr/bin/python3
"""Reload, drain and service integration of the real dnsgw binary.

Certificates swapped on disk (certbot-style rename, Kubernetes "..data"
symlink swap, SIGHUP) while clients keep querying; broken pairs refused with
the old certificate kept; configuration reload on SIGHUP; SIGTERM with slow
queries in flight on DoH and DoQ (DoT, TCP and UDP are in test_dot.py);
--user; systemd's sd_notify protocol on a socket the test binds.

Clients: Python's ssl (the peer certificate's serial), the raw HTTP/2 client
of dohtest.py, tests/tools/doq_client, and trixie's kdig +quic when its
chroot is available. Upstream: the scripted responder (slow-NNN names).

Run: /usr/bin/python3 tests/integration/test_lifecycle.py --binary build/dnsgw
"""

import os
import pwd
import random
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dnswire as W  # noqa: E402
import dohtest as D  # noqa: E402
import doqtest as Q  # noqa: E402
import gwtest as G  # noqa: E402
from gwtest import check  # noqa: E402

suite = G.Suite('dnsgw reload, drain and service integration tests')

DEBOUNCE = 1.0  # gateway/reload.h GW_RELOAD_DEBOUNCE


def responder(s):
    return s.fixture('responder', lambda: G.ResponderProc().start())


def tag():
    return 'u%d' % random.randint(0, 10**9)


# ------------------------------------------------------------ certificates

def make_pair(d, prefix, serial):
    """A self-signed EC P-256 pair with the given serial (hex string).
    Returns (cert_path, key_path)."""
    cert = os.path.join(d, prefix + '.crt')
    key = os.path.join(d, prefix + '.key')
    r = subprocess.run(
        ['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
         'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj',
         '/CN=dnsgw.test', '-addext',
         'subjectAltName=DNS:dnsgw.test,IP:127.0.0.1', '-set_serial',
         '0x' + serial, '-keyout', key, '-out', cert],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    if r.returncode != 0:
        raise RuntimeError('openssl: ' + r.stdout.decode(errors='replace'))
    return cert, key


def spki_pin(cert):
    """base64(SHA-256(SPKI)), as kdig +tls-pin wants it."""
    pub = subprocess.run(['openssl', 'x509', '-in', cert, '-pubkey', '-noout'],
                         stdout=subprocess.PIPE, check=True).stdout
    der = subprocess.run(['openssl', 'pkey', '-pubin', '-outform', 'der'],
                         input=pub, stdout=subprocess.PIPE, check=True).stdout
    dig = subprocess.run(['openssl', 'dgst', '-sha256', '-binary'], input=der,
                         stdout=subprocess.PIPE, check=True).stdout
    import base64
    return base64.b64encode(dig).decode()


def der_tlv(b, i):
    """(tag, value_start, value_end) of the DER TLV at b[i]."""
    t = b[i]
    n = b[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7f
        n = int.from_bytes(b[i:i + k], 'big')
        i += k
    return t, i, i + n


def cert_serial(der):
    """The serial number of a DER certificate, as lower-case hex."""
    _, s, _ = der_tlv(der, 0)          # Certificate
    _, s, _ = der_tlv(der, s)          # tbsCertificate
    t, vs, ve = der_tlv(der, s)
    if t == 0xa0:                      # [0] version
        t, vs, ve = der_tlv(der, ve)
    assert t == 0x02, 'no serial INTEGER'
    return '%x' % int.from_bytes(der[vs:ve], 'big')


def served_serial(port, alpn=None, timeout=3):
    """Serial of the certificate a new TLS connection to port is served."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    with socket.create_connection(('127.0.0.1', port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw) as s:
            return cert_serial(s.getpeercert(binary_form=True))


def wait_serial(port, want, timeout=6.0, alpn=None):
    """Polls new connections until they are served serial want; returns
    the seconds it took (or fails)."""
    t0 = time.monotonic()
    got = None
    while time.monotonic() - t0 < timeout:
        try:
            got = served_serial(port, alpn)
        except (OSError, ssl.SSLError) as e:
            got = repr(e)
        if got == want:
            return time.monotonic() - t0
        time.sleep(0.1)
    check(False, 'new connections on %d still get serial %s, want %s after '
          '%.0fs' % (port, got, want, timeout))


def replace_like_certbot(d, cert_src, key_src, cert_dst, key_dst):
    """Writes the new pair next to the live files and renames it over them
    (key first, then certificate, as a renewal tool does: the pair is
    mismatched for a moment, which the debounce must ride out)."""
    for src, dst in ((key_src, key_dst), (cert_src, cert_dst)):
        replace_file(src, dst)


def replace_file(src, dst):
    tmp = dst + '.new'
    with open(src, 'rb') as f, open(tmp, 'wb') as o:
        o.write(f.read())
    os.rename(tmp, dst)


def log_count(g, needle):
    with g.lock:
        return sum(needle in l for l in g.lines)


def wait_log(g, needle, n0, timeout=5.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if log_count(g, needle) > n0:
            return
        time.sleep(0.05)
    check(False, 'no new log line with %r within %.0fs' % (needle, timeout),
          g.log_tail(15))


def reload_gw(s, name, extra_listen=(), **kw):
    """A gateway with DoT (and the given listeners) on cert files in its own
    directory: live/cert.pem and live/key.pem, serial aa."""
    def make():
        r = responder(s)
        d = G.tmpdir('dnsgw-certs-')
        live = os.path.join(d, 'live')
        os.mkdir(live)
        pairs = {sn: make_pair(d, 'p' + sn, sn) for sn in ('aa', 'bb', 'cc')}
        cert, key = os.path.join(live, 'cert.pem'), os.path.join(live, 'key.pem')
        replace_like_certbot(live, pairs['aa'][0], pairs['aa'][1], cert, key)
        g = G.Gateway(s.binary, ['udp://127.0.0.1:%d' % r.port], cert=cert,
                      key=key, config={'log': {'level': 'info'}}, threads=2,
                      **kw)
        g.config['listen'] = ['dot://127.0.0.1:%d' % g.dot]
        for scheme in extra_listen:
            port = G.free_port()
            setattr(g, scheme, port)
            g.config['listen'].append('%s://127.0.0.1:%d' % (scheme, port))
        g.pairs, g.certdir = pairs, d
        g.cert_live, g.key_live = cert, key
        g.start()
        return g
    return s.fixture(name, make)


def dot_ok(port, name, timeout=3):
    c = G.StreamClient(port, timeout=timeout)
    try:
        m = c.query(W.build_query(name, qid=7), timeout)
        return m.a_records() == ['192.0.2.1']
    finally:
        c.close()


# -------------------------------------------------------------- the cases

@suite.case(timeout=120)
def test_cert_swapped_on_disk_under_load(s):
    """Renaming a new pair over the files (certbot) under DoT load: new
    DoT, DoH and DoQ connections get the new certificate within the
    debounce; a connection opened before keeps answering; no query fails."""
    g = reload_gw(s, 'gw_reload', extra_listen=('doh', 'doq'))
    t = tag()
    check(served_serial(g.dot) == 'aa', 'start: not serial aa')
    check(served_serial(g.doh, ['h2']) == 'aa', 'DoH start: not serial aa')
    old = G.StreamClient(g.dot, timeout=5)
    m = old.query(W.build_query('before.%s.example.test' % t, qid=1), 3)
    check(m.a_records() == ['192.0.2.1'], 'old connection: %r' % m)

    stop = threading.Event()
    stats = {'ok': 0, 'bad': []}

    def load():
        i = 0
        while not stop.is_set():
            i += 1
            try:
                if dot_ok(g.dot, 'load-%d.%s.example.test' % (i, t)):
                    stats['ok'] += 1
                else:
                    stats['bad'].append('wrong answer')
            except Exception as e:  # noqa: BLE001 - any failure counts
                stats['bad'].append(repr(e))
    th = [threading.Thread(target=load, daemon=True) for _ in range(3)]
    for x in th:
        x.start()
    try:
        time.sleep(0.3)
        n0 = log_count(g, 'certificate reloaded')
        t0 = time.monotonic()
        replace_like_certbot(g.certdir, g.pairs['bb'][0], g.pairs['bb'][1],
                             g.cert_live, g.key_live)
        took = wait_serial(g.dot, 'bb')
        check(took >= DEBOUNCE * 0.8, 'reloaded after %.2fs: no debounce' % took)
        wait_log(g, 'certificate reloaded', n0)
        check(served_serial(g.doh, ['h2']) == 'bb', 'DoH: not the new serial')
        # the connection from before the swap is still served
        for i in range(3):
            m = old.query(W.build_query('after-%d.%s.example.test' % (i, t),
                                        qid=10 + i), 3)
            check(m.a_records() == ['192.0.2.1'], 'old connection after the '
                  'swap: %r' % m)
        time.sleep(0.5)
    finally:
        stop.set()
        for x in th:
            x.join(10)
        old.close()
    check(not stats['bad'], '%d of %d queries failed during the swap: %s' % (
        len(stats['bad']), stats['ok'] + len(stats['bad']), stats['bad'][:3]))
    check(stats['ok'] > 10, 'too little load: %d queries' % stats['ok'])
    print('# %d queries over new DoT connections during the swap, reload '
          'seen after %.2fs' % (stats['ok'], time.monotonic() - t0 - 0.5))
    # DoQ got a valid QUIC context from the same reload
    r = Q.doq_client(s.binary, g.doq, 'normal', n=2)[0]
    check(r['handshake'] and r['answers'] == 2, 'DoQ after reload: %s' % r)
    if Q.chroot_ready():
        rc, out = Q.kdig_quic(g.doq, ['+tls-pin=' + spki_pin(g.pairs['bb'][0]),
                                      'pin.%s.example.test' % t])
        check(rc == 0 and '192.0.2.1' in out, 'kdig +quic with the new '
              'pin failed', out)
        rc, out = Q.kdig_quic(g.doq, ['+tls-pin=' + spki_pin(g.pairs['aa'][0]),
                                      'pin2.%s.example.test' % t])
        check(rc != 0 or '192.0.2.1' not in out, 'DoQ still serves the old '
              'certificate', out)


@suite.case(timeout=60)
def test_broken_pair_refused_old_kept(s):
    """A key that does not match (renamed over the live key) and a cert
    file that is not PEM: each reload is refused with a log line naming
    the problem, and new connections keep getting the current
    certificate; a good pair afterwards is taken."""
    g = reload_gw(s, 'gw_broken')
    check(served_serial(g.dot) == 'aa', 'start: not serial aa')
    n0 = log_count(g, 'certificate reload failed')
    # the key of another pair renamed over the live key: mismatched
    replace_file(g.pairs['bb'][1], g.key_live)
    wait_log(g, 'certificate reload failed', n0)
    with g.lock:
        line = [l for l in g.lines if 'certificate reload failed' in l][-1]
    check('key does not match' in line, 'log line does not say why: ' + line)
    check(served_serial(g.dot) == 'aa', 'mismatched key: serial changed')
    check(dot_ok(g.dot, 'still.example.test'), 'not serving after a '
          'refused reload')

    n1 = log_count(g, 'certificate reload failed')
    with open(g.cert_live + '.new', 'w') as f:
        f.write('-----BEGIN CERTIFICATE-----\nnot base64 at all\n'
                '-----END CERTIFICATE-----\n')
    os.rename(g.cert_live + '.new', g.cert_live)
    wait_log(g, 'certificate reload failed', n1)
    check(served_serial(g.dot) == 'aa', 'garbage PEM: serial changed')
    check(dot_ok(g.dot, 'still2.example.test'), 'not serving after a '
          'refused reload')

    replace_like_certbot(g.certdir, g.pairs['cc'][0], g.pairs['cc'][1],
                         g.cert_live, g.key_live)
    wait_serial(g.dot, 'cc')


@suite.case(timeout=60)
def test_sighup_reloads_certificate(s):
    """SIGHUP reloads at once (no debounce): new connections get the new
    serial well within a second, and the log says SIGHUP did it."""
    g = reload_gw(s, 'gw_hup')
    # copy (not rename) the pair in place after stopping to look: write it
    # and signal right away
    n0 = log_count(g, 'trigger=SIGHUP')
    replace_like_certbot(g.certdir, g.pairs['bb'][0], g.pairs['bb'][1],
                         g.cert_live, g.key_live)
    g.proc.send_signal(signal.SIGHUP)
    took = wait_serial(g.dot, 'bb', timeout=5)
    check(took < DEBOUNCE * 0.8, 'SIGHUP reload took %.2fs' % took)
    wait_log(g, 'trigger=SIGHUP', n0)
    with g.lock:
        line = [l for l in g.lines if 'trigger=SIGHUP' in l][-1]
    check('certificate reloaded' in line, 'SIGHUP reload: ' + line)
    # a broken pair on SIGHUP: refused, old kept
    n1 = log_count(g, 'certificate reload failed')
    replace_like_certbot(g.certdir, g.pairs['cc'][0], g.pairs['aa'][1],
                         g.cert_live, g.key_live)
    g.proc.send_signal(signal.SIGHUP)
    wait_log(g, 'certificate reload failed', n1)
    check(served_serial(g.dot) == 'bb', 'broken pair on SIGHUP: serial changed')


@suite.case(timeout=60)
def test_kubernetes_symlink_swap(s):
    """A Kubernetes secret volume: tls.crt -> ..data/tls.crt, ..data ->
    ..TIMESTAMP; the kubelet swaps ..data by renaming a new symlink over
    it. New connections get the new certificate."""
    r = responder(s)
    d = G.tmpdir('dnsgw-k8s-')
    vol = os.path.join(d, 'secret')
    os.mkdir(vol)

    def version(name, sn):
        v = os.path.join(vol, name)
        os.mkdir(v)
        c, k = make_pair(d, 'k' + sn, sn)
        os.rename(c, os.path.join(v, 'tls.crt'))
        os.rename(k, os.path.join(v, 'tls.key'))
    version('..2026_01_01_00_00_00.1', 'a1')
    os.symlink('..2026_01_01_00_00_00.1', os.path.join(vol, '..data'))
    for f in ('tls.crt', 'tls.key'):
        os.symlink(os.path.join('..data', f), os.path.join(vol, f))
    g = G.Gateway(s.binary, ['udp://127.0.0.1:%d' % r.port],
                  cert=os.path.join(vol, 'tls.crt'),
                  key=os.path.join(vol, 'tls.key'))
    g.start()
    check(served_serial(g.dot) == 'a1', 'start: not serial a1')
    version('..2026_01_02_00_00_00.2', 'b2')
    os.symlink('..2026_01_02_00_00_00.2', os.path.join(vol, '..data_tmp'))
    os.rename(os.path.join(vol, '..data_tmp'), os.path.join(vol, '..data'))
    wait_serial(g.dot, 'b2')
    check(dot_ok(g.dot, 'k8s.example.test'), 'not serving after the swap')


@suite.case(timeout=60)
def test_cert_directory_replaced(s):
    """The whole directory replaced (moved away, a new one moved in): the
    watch follows the path, not the old directory, so the new pair is
    picked up, and a later change inside the new directory is seen too."""
    g = reload_gw(s, 'gw_dir')
    live = os.path.dirname(g.cert_live)
    new = live + '.new'
    os.mkdir(new)
    replace_like_certbot(new, g.pairs['bb'][0], g.pairs['bb'][1],
                         os.path.join(new, 'cert.pem'),
                         os.path.join(new, 'key.pem'))
    os.rename(live, live + '.old')
    os.rename(new, live)
    wait_serial(g.dot, 'bb')
    replace_like_certbot(live, g.pairs['cc'][0], g.pairs['cc'][1],
                         g.cert_live, g.key_live)
    wait_serial(g.dot, 'cc')


@suite.case(timeout=60)
def test_sighup_reloads_config(s):
    """SIGHUP parses the file again: log.level and limits apply, a changed
    thread count is reported as needing a restart; a file that no longer
    parses changes nothing and the gateway keeps serving."""
    r = responder(s)
    g = G.Gateway(s.binary, ['udp://127.0.0.1:%d' % r.port], dns=True,
                  config={'log': {'level': 'info'},
                          'limits': {'idle_timeout_ms': 10000}})
    g.start()
    path = g.config_path
    text = open(path).read()
    text = text.replace('level: "info"', 'level: "debug"')
    text = text.replace('idle_timeout_ms: 10000', 'idle_timeout_ms: 1000')
    text = re.sub(r'threads: \d+', 'threads: 3', text)
    check('debug' in text and '1000' in text and 'threads: 3' in text,
          'config rewrite failed')
    with open(path + '.new', 'w') as f:
        f.write(text)
    os.rename(path + '.new', path)
    n0 = log_count(g, 'configuration reloaded')
    g.proc.send_signal(signal.SIGHUP)
    wait_log(g, 'configuration reloaded', n0)
    with g.lock:
        line = [l for l in g.lines if 'configuration reloaded' in l][-1]
    check(re.search(r'applied="?[^ ]*log\.level', line) and
          'limits.idle_timeout_ms' in line, 'not applied: ' + line)
    check(re.search(r'restart_needed="?[^ ]*threads', line),
          'threads change not reported: ' + line)
    # the new idle timeout: a silent TCP connection is closed after ~1 s
    c = G.StreamClient(g.dns, tls=False, timeout=5)
    took = c.wait_closed(4)
    c.close()
    check(took is not None and took < 2.5, 'idle_timeout_ms 1000 not '
          'applied (closed after %s s, was 10 s)' % took)
    # debug level now: per-connection debug lines appear
    # (the closed connection's debug line may still be on its way to
    # the log reader)
    wait_log(g, 'level=debug', 0)
    # still serving through the responder
    m = G.udp_query(g.dns, W.build_query('cfg.%s.example.test' % tag(),
                                         qid=3))
    check(m.a_records() == ['192.0.2.1'], 'upstream changed without restart?')

    n1 = log_count(g, 'configuration reload failed')
    with open(path, 'w') as f:
        f.write('log: {level: [broken\n')
    g.proc.send_signal(signal.SIGHUP)
    wait_log(g, 'configuration reload failed', n1)
    m = G.udp_query(g.dns, W.build_query('cfg2.%s.example.test' % tag(),
                                         qid=4))
    check(m.a_records() == ['192.0.2.1'], 'not serving after a bad reload')


@suite.case(timeout=60)
def test_sighup_reloads_acl(s):
    """SIGHUP with a new policy.acl: applied at once on UDP and TCP (the
    loopback client denied: UDP dropped, TCP closed at accept), a
    connection that was already open keeps being served, and putting the
    old list back serves everyone again."""
    r = responder(s)
    g = G.Gateway(s.binary, ['udp://127.0.0.1:%d' % r.port], dot=False,
                  dns=True, config={'log': {'level': 'info'}})
    g.start()
    t = tag()
    m = G.udp_query(g.dns, W.build_query('acl0.%s.example.test' % t, qid=1))
    check(m.a_records() == ['192.0.2.1'], 'before: %r' % m)
    open_conn = G.StreamClient(g.dns, tls=False, timeout=3)
    # answered, so accepted by a worker before the ACL changes
    m = open_conn.query(W.build_query('acl00.%s.example.test' % t, qid=9), 3)
    check(m.a_records() == ['192.0.2.1'], 'open connection before: %r' % m)
    path = g.config_path
    base = open(path).read()

    def write(text):
        with open(path + '.new', 'w') as f:
            f.write(text)
        os.rename(path + '.new', path)
    try:
        write(base + 'policy:\n  acl:\n    - "deny 127.0.0.0/8"\n')
        n0 = log_count(g, 'configuration reloaded')
        g.proc.send_signal(signal.SIGHUP)
        wait_log(g, 'configuration reloaded', n0)
        with g.lock:
            line = [l for l in g.lines if 'configuration reloaded' in l][-1]
        check('policy.acl' in line and 'restart_needed=none' in line,
              'ACL not applied as reloadable: ' + line)
        try:
            m = G.udp_query(g.dns, W.build_query('acl1.%s.example.test' % t,
                                                  qid=2), timeout=1.0)
            check(False, 'denied client answered over UDP: %r' % m)
        except (socket.timeout, TimeoutError):
            pass
        c = G.StreamClient(g.dns, tls=False, timeout=2)
        try:
            closed = c.wait_closed(2)
            check(closed is not None, 'denied TCP connection not closed')
        finally:
            c.close()
        m = open_conn.query(W.build_query('acl2.%s.example.test' % t, qid=3), 3)
        check(m.a_records() == ['192.0.2.1'], 'open connection: %r' % m)
        write(base)
        n1 = log_count(g, 'configuration reloaded')
        g.proc.send_signal(signal.SIGHUP)
        wait_log(g, 'configuration reloaded', n1)
        m = G.udp_query(g.dns, W.build_query('acl3.%s.example.test' % t, qid=4))
        check(m.a_records() == ['192.0.2.1'], 'after restoring: %r' % m)
    finally:
        open_conn.close()


def rewrite_config(g, upstreams=None, **top):
    """Writes g's configuration file again (atomically) with other
    upstreams and/or other top-level sections; g.config keeps them."""
    if upstreams is not None:
        g.upstreams = list(upstreams)
    for k, v in top.items():
        if v is None:
            g.config.pop(k, None)
        else:
            g.config[k] = v
    path = g.config_path
    g.command()  # writes config_path
    os.rename(path, path + '.new')
    os.rename(path + '.new', path)


def sighup(g, needle='configuration reload'):
    """SIGHUP, then the reload's log line (the last with needle)."""
    n0 = log_count(g, needle)
    g.proc.send_signal(signal.SIGHUP)
    wait_log(g, needle, n0, timeout=15)
    with g.lock:
        return [l for l in g.lines if needle in l][-1]


def metrics_text(admin):
    """The /metrics body of the admin listener."""
    with socket.create_connection(('127.0.0.1', admin), timeout=5) as c:
        c.sendall(b'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n')
        data = b''
        while True:
            b = c.recv(65536)
            if not b:
                break
            data += b
    return data.decode(errors='replace')


def reloads_metric(admin, result):
    """dnsgw_reloads_total{result=...} from the admin listener."""
    m = re.search(r'^dnsgw_reloads_total\{result="%s"\} (\d+)$' % result,
                  metrics_text(admin), re.M)
    check(m, 'no dnsgw_reloads_total{result="%s"} in /metrics' % result)
    return int(m.group(1))


def answers_from(port, name, n=12):
    """A records of n UDP queries for name, each from a new socket (so
    both workers get some); returns the set of answers seen."""
    seen = set()
    for i in range(n):
        m = G.udp_query(port, W.build_query(name, qid=100 + i), timeout=3)
        seen.add(tuple(m.a_records()) or m.rcode_name)
    return seen


@suite.case(timeout=120)
def test_sighup_switches_upstreams(s):
    """SIGHUP with another upstream list: new queries go to the new one in
    every worker (responder A answers 192.0.2.1, unbound B 192.0.2.10) and
    the cache starts empty, a
    query in flight to slow A at the moment of the reload is still answered
    by A; a bad upstream URL is refused with nothing changed and counted
    in dnsgw_reloads_total{result="failure"}; twenty reloads in a row leave
    no descriptor or connection behind."""
    a = responder(s)
    b = s.fixture('unbound', lambda: G.Unbound().start())
    admin = G.free_port()
    g = G.Gateway(s.binary, ['udp://127.0.0.1:%d' % a.port], dot=False,
                  dns=True, threads=2,
                  config={'log': {'level': 'info'}, 'admin':
                          '127.0.0.1:%d' % admin,
                          'upstream': {'timeout_ms': 5000}})
    g.start()
    t = tag()
    check(answers_from(g.dns, 'www.example.test') == {('192.0.2.1',)},
          'before the reload: not answered by A')
    base = g.snapshot()
    ok0, bad0 = reloads_metric(admin, 'success'), reloads_metric(admin,
                                                                  'failure')

    # a slow query on its way to A while the upstreams change
    slow = 'slow-2000.%s.example.test' % t
    res = {}

    def ask_slow():
        try:
            res['m'] = G.udp_query(g.dns, W.build_query(slow, qid=9),
                                   timeout=8)
        except Exception as e:  # noqa: BLE001 - reported below
            res['e'] = e
    th = threading.Thread(target=ask_slow, daemon=True)
    th.start()
    check(a.wait_records(slow, 1, timeout=5), 'slow query never reached A')
    rewrite_config(g, ['udp://127.0.0.1:%d' % b.port])
    line = sighup(g)
    check(re.search(r'applied="?[^ ]*upstream', line) and
          'restart_needed=none' in line, 'upstreams not applied: ' + line)
    check(answers_from(g.dns, 'www.example.test') == {('192.0.2.10',)},
          'after the reload: not (only) answered by B')
    th.join(8)
    check('m' in res, 'in-flight query lost over the reload: %r' % res)
    check(res['m'].a_records() == ['192.0.2.1'],
          'in-flight query not answered by A: %r' % res['m'])
    # the cache was emptied with the switch (www was cached from A), and
    # the late answer of A was not kept
    again = answers_from(g.dns, slow)
    check(('192.0.2.1',) not in again, "A's late answer was cached: %r" % again)
    check(reloads_metric(admin, 'success') == ok0 + 1, 'success not counted')
    # the upstream metrics follow the list
    text = metrics_text(admin)
    label = 'dnsgw_upstream_requests_total{upstream="udp://127.0.0.1:%d"}'
    check(label % b.port in text and label % a.port not in text,
          'upstream labels after the reload', text[-3000:])

    # a bad upstream: refused before any worker sees it
    a_seen = len(a.records())
    rewrite_config(g, ['tls://127.0.0.1:%d' % a.port])  # no name to verify
    line = sighup(g, 'configuration reload failed')
    check('nothing changed' in line, line)
    check(reloads_metric(admin, 'failure') == bad0 + 1,
          'failed reload not counted')
    check(answers_from(g.dns, 'www.example.test') == {('192.0.2.10',)},
          'after a refused reload: not answered by B')
    rewrite_config(g, ['udp://127.0.0.1:%d' % b.port, 'not-a-url'])
    line = sighup(g, 'configuration reload failed')
    check(reloads_metric(admin, 'failure') == bad0 + 2,
          'unparsable URL not counted as a failure')
    check(answers_from(g.dns, 'www.example.test', 4) == {('192.0.2.10',)},
          'after an unparsable URL: not answered by B')
    # a host name the bootstrap resolver (B) does not know: checked as at
    # start-up, refused
    up = dict(g.config['upstream'])
    up['bootstrap'] = '127.0.0.1:%d' % b.port
    rewrite_config(g, ['tls://nosuch.example.test#nosuch.example.test'],
                   upstream=up)
    line = sighup(g, 'configuration reload failed')
    check('cannot resolve' in line, 'unresolvable host: ' + line)
    check(reloads_metric(admin, 'failure') == bad0 + 3,
          'unresolvable host not counted as a failure')
    rewrite_config(g, upstream={'timeout_ms': 5000})
    check(answers_from(g.dns, 'www.example.test', 4) == {('192.0.2.10',)},
          'after an unresolvable host: not answered by B')
    check(len(a.records()) == a_seen, 'A asked after it was replaced')

    # twenty reloads back and forth, queries in between, /metrics scraped
    # all along (the admin thread reads the pools being swapped)
    stop, scrapes = threading.Event(), []

    def scraper():
        while not stop.is_set():
            scrapes.append('dnsgw_upstream_healthy' in metrics_text(admin))
    sc = threading.Thread(target=scraper, daemon=True)
    sc.start()
    for i in range(20):
        up, want = ((a.port, '192.0.2.1') if i % 2 == 0
                    else (b.port, '192.0.2.10'))
        rewrite_config(g, ['udp://127.0.0.1:%d' % up])
        line = sighup(g)
        check('configuration reloaded' in line and 'upstream' in line,
              'reload %d: %s' % (i, line))
        check(answers_from(g.dns, 'www.example.test', 4) == {(want,)},
              'reload %d: not answered by the new upstream' % i)
    stop.set()
    sc.join(10)
    check(scrapes and all(scrapes), 'scrapes during the reloads: %d, %d '
          'without upstreams' % (len(scrapes), scrapes.count(False)))
    check(reloads_metric(admin, 'success') == ok0 + 21,
          'twenty reloads not all counted as successes')
    rss0 = base['rss']
    g.expect_baseline(base, what='after 21 upstream reloads')
    rss1 = g.rss_kib()
    print('# rss %d KiB before the reloads, %d KiB after' % (rss0, rss1))
    if not G.sanitized(s.binary):
        check(rss1 - rss0 < 16 * 1024, 'RSS grew by %d KiB over 21 reloads'
              % (rss1 - rss0))


@suite.case(timeout=60)
def test_sighup_applies_rate_limits(s):
    """Rate limits off: a burst on one TCP connection is answered in full;
    SIGHUP with policy.ratelimit.qps 5: the same burst now gets REFUSED
    past the first few (new, empty tables), the log names what applied."""
    r = responder(s)
    g = G.Gateway(s.binary, ['udp://127.0.0.1:%d' % r.port], dot=False,
                  dns=True, config={'log': {'level': 'info'}})
    g.start()
    t = tag()

    def burst(n=30):
        c = G.StreamClient(g.dns, tls=False, timeout=5)
        try:
            for i in range(n):
                c.send_msg(W.build_query('rl%d.%s.example.test' % (i, t),
                                         qid=i + 1))
            return [c.recv_msg(5).rcode_name for _ in range(n)]
        finally:
            c.close()
    got = burst()
    check(got.count('NOERROR') == 30, 'rate limit off: %r' % got)
    rewrite_config(g, policy={'ratelimit': {'qps': 5}})
    line = sighup(g)
    check(re.search(r'applied="?[^ ]*policy\.rates', line) and
          'restart_needed=none' in line, 'rates not applied: ' + line)
    got = burst()
    check(got.count('REFUSED') >= 20 and got.count('NOERROR') >= 1,
          'qps 5 not applied: %r' % got)
    # and off again
    rewrite_config(g, policy=None)
    line = sighup(g)
    check('policy.rates' in line, line)
    got = burst()
    check(got.count('NOERROR') == 30, 'rate limit off again: %r' % got)


@suite.case(timeout=60)
def test_sigterm_drains_doh_and_doq(s):
    """SIGTERM with slow (2 s) queries in flight on a DoH connection (3
    streams) and DoQ connections: every answer arrives, DoH sends GOAWAY
    (NO_ERROR), DoQ closes with DOQ_NO_ERROR, a new DoH connection is no
    longer accepted, and dnsgw exits 0 within drain_timeout_ms."""
    drain_ms = 4000
    r = responder(s)
    g = G.Gateway(s.binary, ['udp://127.0.0.1:%d' % r.port], dot=False,
                  config={'limits': {'drain_timeout_ms': drain_ms},
                          'upstream': {'timeout_ms': 5000}})
    g.doh, g.doq = G.free_port(), G.free_port()
    g.config['listen'] = ['doh://127.0.0.1:%d' % g.doh,
                          'doq://127.0.0.1:%d' % g.doq]
    g.start()
    t = tag()
    h = D.H2Client(g.doh, timeout=10)
    names = ['slow-2000.h%d.%s.example.test' % (i, t) for i in range(3)]
    sids = [h.get(W.build_query(n, qid=0)) for n in names]
    doq_res = []

    def doq(i):
        doq_res.append(Q.doq_client(s.binary, g.doq, 'normal', n=2, timeout=8,
                                    extra=('-q', 'slow-2000.q%d.%s.example.test'
                                           % (i, t)))[0])
    th = [threading.Thread(target=doq, args=(i,), daemon=True) for i in range(2)]
    for x in th:
        x.start()
    # SIGTERM once every query has reached the upstream: in flight for sure
    names += ['slow-2000.q%d.%s.example.test' % (i, t) for i in range(2)]
    for n in names:
        check(r.wait_records(n, 1, timeout=8), 'query %s never reached the '
              'upstream' % n, g.log_tail(10))
    g.stopped_on_purpose = True
    t0 = time.monotonic()
    g.proc.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    try:
        late = D.H2Client(g.doh, timeout=2)
        late.close()
        check(False, 'a DoH connection made after SIGTERM was accepted')
    except (OSError, ssl.SSLError, AssertionError):
        pass
    data = {sid: b'' for sid in sids}
    done, goaway = set(), None
    deadline = time.monotonic() + drain_ms / 1000.0 + 2
    while (len(done) < len(sids) or goaway is None) and \
            time.monotonic() < deadline:
        try:
            ft, fl, sid, payload = h.read_frame(deadline - time.monotonic())
        except (G.Closed, socket.timeout, TimeoutError):
            break
        if ft == D.DATA and sid in data:
            data[sid] += payload
            if fl & D.END_STREAM:
                done.add(sid)
        elif ft == D.GOAWAY:
            goaway = D.goaway_of(payload)
        elif ft == D.RST_STREAM:
            check(False, 'stream %d reset during drain' % sid)
    h.close()
    check(done == set(sids), 'DoH: %d of %d in-flight answers arrived' %
          (len(done), len(sids)), g.log_tail(10))
    for sid in sids:
        m = W.parse(data[sid])
        check(m.a_records() == ['192.0.2.1'], 'DoH drain answer: %r' % m)
    check(goaway is not None and goaway[1] == D.NO_ERROR,
          'DoH: GOAWAY %s, want NO_ERROR' % (goaway,))
    for x in th:
        x.join(15)
    check(len(doq_res) == 2, 'doq_client runs: %s' % doq_res)
    for res in doq_res:
        check(res['handshake'] and res['answers'] == 2 and
              res['bad_answers'] == 0, 'DoQ: in-flight answers lost: %s' % res)
        check(res['closed_by_us'] or (res['close_type'] == 'application' and
                                      res['close_code'] == 0),
              'DoQ closed with %s %s, want DOQ_NO_ERROR' % (
                  res['close_type'], res['close_code']))
    try:
        rc = g.proc.wait(drain_ms / 1000.0 + G.EXIT_GRACE)
    except subprocess.TimeoutExpired:
        rc = 'still running'
    took = time.monotonic() - t0
    g._reaped(rc if isinstance(rc, int) else None)
    check(rc == 0, 'exit status %s %.1fs after SIGTERM' % (rc, took),
          g.log_tail())
    check(took <= drain_ms / 1000.0 + 0.5, 'exited %.2fs after SIGTERM' % took)
    print('# DoH and DoQ drained; exited %.2fs after SIGTERM' % took)


def proc_uids(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('Uid:'):
                return [int(x) for x in line.split()[1:]]
            if line.startswith('Gid:'):
                pass
    return None


def proc_field(pid, name):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith(name + ':'):
                return line.split()[1:]
    return None


@suite.case(timeout=60)
def test_user_drops_privileges(s):
    """--user nobody (as root): after start every uid and gid of the
    process is nobody's, there are no supplementary root groups, DoT still
    answers, a certificate reload that cannot read a root-only key is
    refused with the old certificate kept, and SIGTERM exits 0."""
    if os.geteuid() != 0:
        check(False, 'needs root')
    nobody = pwd.getpwnam('nobody')
    r = responder(s)
    d = G.tmpdir('dnsgw-user-')
    os.chmod(d, 0o755)
    cert, key = make_pair(d, 'u', 'aa')
    os.chmod(key, 0o600)  # root's: readable at start-up only
    g = G.Gateway(s.binary, ['udp://127.0.0.1:%d' % r.port], cert=cert,
                  key=key, extra_args=['--user', 'nobody'])
    g.start()
    uids = [int(x) for x in proc_field(g.proc.pid, 'Uid')]
    gids = [int(x) for x in proc_field(g.proc.pid, 'Gid')]
    groups = [int(x) for x in proc_field(g.proc.pid, 'Groups') or []]
    check(uids == [nobody.pw_uid] * 4, 'uids %s, want nobody (%d)' %
          (uids, nobody.pw_uid))
    check(gids == [nobody.pw_gid] * 4, 'gids %s, want %d' % (gids, nobody.pw_gid))
    check(0 not in groups, 'root group kept: %s' % groups)
    # every thread, not just the main one
    for tid in os.listdir('/proc/%d/task' % g.proc.pid):
        tu = proc_field(int(tid), 'Uid')
        check(tu and int(tu[0]) == nobody.pw_uid, 'thread %s uid %s' % (tid, tu))
    check(dot_ok(g.dot, 'user.example.test'), 'not serving as nobody')
    check(served_serial(g.dot) == 'aa', 'serial')
    n0 = log_count(g, 'certificate reload failed')
    g.proc.send_signal(signal.SIGHUP)
    wait_log(g, 'certificate reload failed', n0)
    check(served_serial(g.dot) == 'aa', 'serial changed')
    rc = g.stop()
    check(rc == 0, 'exit status %s' % rc, g.log_tail())


@suite.case(timeout=30)
def test_user_unknown_exits_2(s):
    """An unknown --user: exit 2 (configuration) before serving."""
    r = responder(s)
    port = G.free_port()
    p = subprocess.run([s.binary, '--listen', 'udp://127.0.0.1:%d' % port,
                        '--upstream', 'udp://127.0.0.1:%d' % r.port,
                        '--threads', '1', '--user', 'no-such-user-gw'],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=20)
    err = p.stderr.decode(errors='replace')
    check(p.returncode == 2, 'exit %d, want 2' % p.returncode, err)
    check('no-such-user-gw' in err, 'message does not name the user', err)
    G.check_no_sanitizer(err)
    # dnsgw -t (systemd's ExecStartPre) says so too
    p = subprocess.run([s.binary, '-t', '--listen', 'udp://127.0.0.1:%d' % port,
                        '--upstream', 'udp://127.0.0.1:%d' % r.port,
                        '--user', 'no-such-user-gw'],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=20)
    check(p.returncode == 2 and b'no-such-user-gw' in p.stderr,
          '-t: exit %d' % p.returncode, p.stderr.decode(errors='replace'))
    p = subprocess.run([s.binary, '-t', '--listen', 'udp://127.0.0.1:%d' % port,
                        '--upstream', 'udp://127.0.0.1:%d' % r.port,
                        '--user', 'nobody'],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=20)
    check(p.returncode == 0, '-t --user nobody: exit %d' % p.returncode,
          p.stderr.decode(errors='replace'))


class NotifySocket:
    """A bound AF_UNIX datagram socket, as systemd's $NOTIFY_SOCKET."""

    def __init__(self):
        self.dir = G.tmpdir('dnsgw-notify-')
        self.path = os.path.join(self.dir, 'notify')
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.msgs = []

    def wait(self, want, timeout=10.0):
        """Reads messages until one contains want; returns its arrival."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            self.sock.settimeout(max(0.01, timeout - (time.monotonic() - t0)))
            try:
                m = self.sock.recv(4096).decode()
            except (socket.timeout, TimeoutError):
                break
            self.msgs.append(m)
            if want in m.split('\n'):
                return time.monotonic()
        check(False, 'no %s on NOTIFY_SOCKET; got %s' % (want, self.msgs))


@suite.case(timeout=60)
def test_sd_notify_ready_reloading_stopping(s):
    """NOTIFY_SOCKET: READY=1 once the listeners accept, RELOADING=1 then
    READY=1 around a SIGHUP reload, STOPPING=1 at SIGTERM."""
    r = responder(s)
    ns = NotifySocket()
    env = {k: v for k, v in os.environ.items() if not k.startswith('DNSGW_')}
    env['NOTIFY_SOCKET'] = ns.path
    g = G.Gateway(s.binary, ['udp://127.0.0.1:%d' % r.port], env=env)
    g.start()
    ns.wait('READY=1')
    check(not g.refused_after_ready, 'READY=1 before the DoT port accepts')
    check(dot_ok(g.dot, 'notify.example.test'), 'not serving after READY=1')
    check(ns.msgs[0] == 'READY=1', 'first message %r' % ns.msgs[0])
    g.proc.send_signal(signal.SIGHUP)
    ns.wait('RELOADING=1')
    check(any(l.startswith('MONOTONIC_USEC=') for l in ns.msgs[-1].split('\n')),
          'RELOADING=1 without MONOTONIC_USEC: %r' % ns.msgs[-1])
    ns.wait('READY=1')
    t0 = time.monotonic()
    g.proc.send_signal(signal.SIGTERM)
    g.stopped_on_purpose = True
    ns.wait('STOPPING=1')
    check(time.monotonic() - t0 < 1.0, 'STOPPING=1 late')
    rc = g.proc.wait(10)
    g._reaped(rc)
    check(rc == 0, 'exit status %s' % rc)


@suite.case(timeout=60)
def test_sd_notify_on_certificate_change(s):
    """NOTIFY_SOCKET: a certificate renewed on disk (no signal) is also
    bracketed by RELOADING=1 (with MONOTONIC_USEC) and READY=1, the latter
    after the new certificate is in use."""
    ns = NotifySocket()
    env = {k: v for k, v in os.environ.items() if not k.startswith('DNSGW_')}
    env['NOTIFY_SOCKET'] = ns.path
    g = reload_gw(s, 'gw_notify_inotify', env=env)
    ns.wait('READY=1')
    check(served_serial(g.dot) == 'aa', 'serial before')
    n0 = log_count(g, 'certificate reloaded')
    replace_like_certbot(g.certdir, g.pairs['bb'][0], g.pairs['bb'][1],
                         g.cert_live, g.key_live)
    ns.wait('RELOADING=1')
    msg = ns.msgs[-1].split('\n')
    check(any(l.startswith('MONOTONIC_USEC=') for l in msg),
          'RELOADING=1 without MONOTONIC_USEC: %r' % ns.msgs[-1])
    ns.wait('READY=1')
    # READY=1 comes after the swap: the first new connection gets bb
    check(served_serial(g.dot) == 'bb', 'serial right after READY=1')
    wait_log(g, 'certificate reloaded', n0)


@suite.case(timeout=30)
def test_systemd_unit_is_valid(s):
    """contrib/dnsgw.service: Type=notify, ExecReload sends SIGHUP, and
    systemd-analyze verify (when installed) finds nothing wrong with it."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    unit = os.path.join(root, 'contrib', 'dnsgw.service')
    text = open(unit).read()
    for want in ('Type=notify', 'ExecReload=/bin/kill -HUP $MAINPID',
                 'AmbientCapabilities=CAP_NET_BIND_SERVICE',
                 'ProtectSystem=strict', 'NoNewPrivileges=yes'):
        check(want in text, 'unit lacks %s' % want)
    sa = '/usr/bin/systemd-analyze'
    if os.path.exists(sa):
        d = G.tmpdir('dnsgw-unit-')
        # verify wants ExecStart to exist: point it at the binary under test
        local = text.replace('/usr/local/bin/dnsgw', os.path.abspath(s.binary))
        path = os.path.join(d, 'dnsgw.service')
        with open(path, 'w') as f:
            f.write(local)
        p = subprocess.run([sa, 'verify', path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=20)
        out = p.stdout.decode(errors='replace')
        bad = [l for l in out.splitlines() if 'dnsgw.service' in l]
        check(p.returncode == 0 and not bad, 'systemd-analyze verify', out)


if __name__ == '__main__':
    sys.exit(suite.main())
