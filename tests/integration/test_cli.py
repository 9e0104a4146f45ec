#!/usr/bin/python3
"""Command line and start-up of the real dnsgw binary: -V, -h, -t with good and
bad configuration files (FILE:LINE:COLUMN errors), certificate problems,
the generated self-signed certificate, SIGTERM.

No case runs without an explicit upstream: the resolver of /etc/resolv.conf is
never queried.

Run: /usr/bin/python3 tests/integration/test_cli.py --binary build/dnsgw
"""

import base64
import hashlib
import os
import re
import signal
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dnswire as W  # noqa: E402
import gwtest as G  # noqa: E402
from gwtest import check  # noqa: E402

suite = G.Suite('dnsgw command line integration tests')


def workdir(s):
    return s.fixture('dir', lambda: G.tmpdir('dnsgw-cli-'))


def certs(s):
    return s.fixture('certs', lambda: G.gen_cert(workdir(s)))


def other_certs(s):
    return s.fixture('certs2', lambda: G.gen_cert(workdir(s), 'other.test', 'other'))


def unbound(s):
    return s.fixture('unbound', lambda: G.Unbound().start())


def responder(s):
    return s.fixture('responder', lambda: G.ResponderProc().start())


def write(s, name, text):
    path = os.path.join(workdir(s), name)
    with open(path, 'w') as f:
        f.write(text)
    return path


def dnsgw(s, *args, timeout=15, env=None):
    """Runs dnsgw to completion (runs meant to fail keep their own
    assertions); whatever the exit status, a sanitizer report on stderr
    fails the case."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith('DNSGW_')}
    r = G.run([s.binary] + list(args), timeout=timeout, env=env)
    G.check_no_sanitizer(r.err, 'dnsgw %s' % ' '.join(args))
    return r


def good_config(s):
    cert, key = certs(s)
    return '''# a complete configuration
listen:
  - "dot://127.0.0.1:%d"
  - "udp://127.0.0.1:%d"
  - "tcp://127.0.0.1:%d"
tls:
  cert: "%s"
  key: "%s"
threads: 1
log:
  level: info
  format: logfmt
upstream:
  servers:
    - "udp://127.0.0.1:%d"
  timeout_ms: 2000
  attempts: 3
  strip_ecs: true
limits:
  handshake_timeout_ms: 5000
  idle_timeout_ms: 10000
  partial_timeout_ms: 2000
  write_timeout_ms: 5000
  max_read_events_per_query: 50
  max_inflight_per_conn: 100
  max_conns_per_client: 64
  max_conns: 10000
  max_waiting_per_client: 1000
  drain_timeout_ms: 5000
''' % (G.free_port(), G.free_port(), G.free_port(), cert, key, G.free_port())


LOC = r'(?P<file>[^\s:]+):(?P<line>\d+):(?P<col>\d+):'


def expect_located_error(r, path, line=None, what=''):
    check(r.rc not in (0, 'timeout'), '%sexit status %s, want non-zero' % (what, r.rc),
          r.describe())
    m = re.search(re.escape(path) + r':(\d+):(\d+):', r.err)
    check(m, '%sstderr has no "%s:LINE:COLUMN:" error' % (what, path), r.describe())
    if line is not None:
        check(int(m.group(1)) == line, '%serror on line %s, want line %d' %
              (what, m.group(1), line), r.describe())


# ---------------------------------------------------------------------------

@suite.case
def test_version(s):
    r = dnsgw(s, '-V')
    check(r.rc == 0, '-V exit status %s' % r.rc, r.describe())
    for lib in ('wolfSSL', 'ngtcp2', 'nghttp2', 'libev'):
        check(re.search(re.escape(lib) + r'\D{0,20}\d+\.\d+', r.out, re.I),
              '-V does not show a %s version' % lib, r.describe())
    check(re.search(r'dnsgw\D{0,20}\d+\.\d+', r.out, re.I), '-V shows no dnsgw version',
          r.describe())
    r2 = dnsgw(s, '--version')
    check(r2.rc == 0 and r2.out == r.out, '--version differs from -V', r2.describe())


@suite.case
def test_help(s):
    r = dnsgw(s, '-h')
    check(r.rc == 0, '-h exit status %s' % r.rc, r.describe())
    for word in ('--listen', '--upstream', '--cert', '--key', '-c', '-t', '-V'):
        check(word in r.out, '-h does not mention %s' % word, r.describe())
    # explicit listener and upstream: should the flag be ignored, nothing
    # reaches the resolver of /etc/resolv.conf
    r = dnsgw(s, '--no-such-flag', '--listen', 'udp://127.0.0.1:%d' % G.free_port(),
              '--upstream', 'udp://127.0.0.1:%d' % G.closed_port(), timeout=5)
    check(r.rc not in (0, 'timeout'), 'unknown flag: exit status %s' % r.rc, r.describe())
    check('--no-such-flag' in r.err, 'unknown flag not named on stderr', r.describe())


@suite.case
def test_check_good_config(s):
    path = write(s, 'good.yaml', good_config(s))
    r = dnsgw(s, '-t', '-c', path)
    check(r.rc == 0, '-t on a good config: exit status %s' % r.rc, r.describe())


@suite.case
def test_check_unknown_key(s):
    text = good_config(s).replace('threads: 1\n', 'threads: 1\nbogus_key: 7\n')
    lineno = text.splitlines().index('bogus_key: 7') + 1
    path = write(s, 'unknown.yaml', text)
    r = dnsgw(s, '-t', '-c', path)
    expect_located_error(r, path, lineno)
    check('bogus_key' in r.err, 'the unknown key is not named', r.describe())
    # nested too
    text = good_config(s).replace('  attempts: 3\n', '  attempts: 3\n  atempts: 4\n')
    lineno = text.splitlines().index('  atempts: 4') + 1
    path = write(s, 'unknown2.yaml', text)
    expect_located_error(dnsgw(s, '-t', '-c', path), path, lineno, 'nested: ')


@suite.case
def test_check_bad_values(s):
    cases = [
        ('bad-listen.yaml', '  - "dot://127.0.0.1:%d"\n',
         '  - "dot://999.1.1.1:853"\n', 'bad listen address'),
        ('bad-scheme.yaml', '  - "udp://127.0.0.1:%d"\n',
         '  - "ftp://127.0.0.1:21"\n', 'unknown listen scheme'),
        ('bad-port.yaml', '  - "tcp://127.0.0.1:%d"\n',
         '  - "tcp://127.0.0.1:70000"\n', 'port out of range'),
        ('bad-int.yaml', 'threads: 1\n', 'threads: many\n', 'threads not a number'),
        ('bad-bool.yaml', 'strip_ecs: true\n', 'strip_ecs: perhaps\n', 'bad boolean'),
    ]
    base = good_config(s)
    for fname, old, new, what in cases:
        if '%d' in old:
            m = re.search(re.escape(old).replace('%d', r'\d+'), base)
            old = m.group(0)
        check(old in base, 'test bug: %r not in config' % old)
        text = base.replace(old, new, 1)
        lineno = text[:text.index(new)].count('\n') + 1
        path = write(s, fname, text)
        expect_located_error(dnsgw(s, '-t', '-c', path), path, lineno, what + ': ')


@suite.case
def test_check_yaml_syntax_error(s):
    path = write(s, 'syntax.yaml', 'listen:\n  - "udp://127.0.0.1:%d"\nupstream:\n'
                 '  servers:\n    - "udp://127.0.0.1:%d"\nlimits: [\n' %
                 (G.free_port(), G.closed_port()))
    expect_located_error(dnsgw(s, '-t', '-c', path), path, None)


@suite.case
def test_bad_flags(s):
    up = 'udp://127.0.0.1:%d' % G.free_port()
    r = dnsgw(s, '-t', '--listen', 'bogus://127.0.0.1:1', '--upstream', up)
    check(r.rc not in (0, 'timeout'), 'bad --listen: exit status %s' % r.rc, r.describe())
    check('--listen' in r.err or 'bogus' in r.err, 'bad --listen not explained',
          r.describe())
    r = dnsgw(s, '-t', '--listen', 'udp://127.0.0.1:%d' % G.free_port(),
              '--upstream', 'gopher://127.0.0.1:1')
    check(r.rc not in (0, 'timeout'), 'bad --upstream: exit status %s' % r.rc,
          r.describe())
    r = dnsgw(s, '-t', '-c', os.path.join(workdir(s), 'does-not-exist.yaml'))
    check(r.rc not in (0, 'timeout') and 'does-not-exist.yaml' in r.err,
          'missing config file: status %s' % r.rc, r.describe())


@suite.case
def test_cert_key_mismatch(s):
    cert, _ = certs(s)
    _, key2 = other_certs(s)
    up = 'udp://127.0.0.1:%d' % G.free_port()
    args = ['--listen', 'dot://127.0.0.1:%d' % G.free_port(), '--upstream', up,
            '--cert', cert, '--key', key2, '--threads', '1']
    r = dnsgw(s, *args, timeout=10)
    check(r.rc != 'timeout', 'dnsgw started with a mismatched cert/key pair',
          r.describe())
    check(r.rc != 0, 'mismatched cert/key: exit status 0', r.describe())
    check(cert in r.err and key2 in r.err,
          'the error does not name both files (%s, %s)' % (cert, key2), r.describe())
    r = dnsgw(s, '-t', *args, timeout=10)
    check(r.rc not in (0, 'timeout'), '-t accepted a mismatched pair (status %s)' % r.rc,
          r.describe())


@suite.case
def test_cert_missing_or_garbage(s):
    cert, key = certs(s)
    up = 'udp://127.0.0.1:%d' % G.free_port()
    missing = os.path.join(workdir(s), 'missing.crt')
    r = dnsgw(s, '--listen', 'dot://127.0.0.1:%d' % G.free_port(), '--upstream', up,
              '--cert', missing, '--key', key, timeout=10)
    check(r.rc not in (0, 'timeout'), 'missing cert: status %s' % r.rc, r.describe())
    check(missing in r.err, 'missing cert not named', r.describe())
    garbage = write(s, 'garbage.crt', '-----BEGIN CERTIFICATE-----\nnot base64\n'
                    '-----END CERTIFICATE-----\n')
    r = dnsgw(s, '--listen', 'dot://127.0.0.1:%d' % G.free_port(), '--upstream', up,
              '--cert', garbage, '--key', key, timeout=10)
    check(r.rc not in (0, 'timeout'), 'garbage cert: status %s' % r.rc, r.describe())
    check(garbage in r.err, 'garbage cert not named', r.describe())


@suite.case
def test_port_in_use(s):
    import socket
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(('127.0.0.1', 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        cert, key = certs(s)
        r = dnsgw(s, '--listen', 'dot://127.0.0.1:%d' % port, '--upstream',
                  'udp://127.0.0.1:%d' % G.free_port(), '--cert', cert, '--key', key,
                  '--threads', '1', timeout=10)
        check(r.rc not in (0, 'timeout'), 'started on a busy port (status %s)' % r.rc,
              r.describe())
        check(str(port) in r.err, 'the busy address is not named', r.describe())
    finally:
        busy.close()


@suite.case
def test_second_gateway_refused(s):
    """An address a running gateway holds is in use for a second one (no
    silent SO_REUSEPORT sharing), and a foreign socket that sets
    SO_REUSEADDR cannot share its UDP port (as a resolver client's random
    source port once did, answering its own query); the first keeps
    serving."""
    import errno
    import socket
    u = unbound(s)
    cert, key = certs(s)
    g = G.Gateway(s.binary, ['udp://127.0.0.1:%d' % u.port], dot=True, dns=True,
                  cert=cert, key=key)
    s.stoppers.append(g)
    g.start()
    for url in g.listen:
        r = dnsgw(s, '--listen', url, '--upstream', 'udp://127.0.0.1:%d' % u.port,
                  '--cert', cert, '--key', key, '--threads', '1', timeout=10)
        check(r.rc not in (0, 'timeout'), 'second gateway started on %s' % url,
              r.describe())
        check(url in r.err and 'in use' in r.err, 'the busy address is not named',
              r.describe())
    for family in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        t = socket.socket(socket.AF_INET, family)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            t.bind(('127.0.0.1', g.dns))
            check(False, 'a SO_REUSEADDR socket (%s) shares port %d' % (family, g.dns))
        except OSError as e:
            check(e.errno == errno.EADDRINUSE, 'bind: %s' % e)
        finally:
            t.close()
    G.expect_answer(G.dig(g.dns, 'www.example.test', extra=['+notcp']), ['192.0.2.10'])
    G.expect_answer(G.kdig(g.dot, 'www.example.test', tls=True), ['192.0.2.10'])


@suite.case
def test_generated_self_signed_cert(s):
    u = unbound(s)
    g = G.Gateway(s.binary, ['udp://127.0.0.1:%d' % u.port], dot=True)
    s.fixtures['gw_selfsigned'] = g
    s.stoppers.append(g)
    g.start()
    G.expect_answer(G.kdig(g.dot, 'www.example.test', tls=True), ['192.0.2.10'])
    c = G.StreamClient(g.dot)
    try:
        cert = c.sock.getpeercert(binary_form=True)
        check(cert, 'no certificate presented')
        m = c.query(W.build_query('www.example.test', qid=5))
        check(m.a_records() == ['192.0.2.10'], 'answer %r' % m)
    finally:
        c.close()
    # pin the presented key (RFC 7858 4.2 SPKI pin) and let kdig verify it
    pem = ssl.DER_cert_to_PEM_cert(cert).encode()
    pub = subprocess.run(['openssl', 'x509', '-noout', '-pubkey'], input=pem,
                         capture_output=True).stdout
    der = subprocess.run(['openssl', 'pkey', '-pubin', '-outform', 'der'], input=pub,
                         capture_output=True).stdout
    check(der, 'could not extract the public key of the presented certificate')
    pin = base64.b64encode(hashlib.sha256(der).digest()).decode()
    r = G.kdig(g.dot, 'www.example.test', tls=False, extra=['+tls-pin=' + pin])
    G.expect_answer(r, ['192.0.2.10'])
    wrong = base64.b64encode(hashlib.sha256(b'x').digest()).decode()
    r = G.kdig(g.dot, 'www.example.test', tls=False, extra=['+tls-pin=' + wrong])
    check(r.status is None, 'kdig accepted a wrong pin (test bug?)', r.describe())
    g.stopped_on_purpose = True
    rc = g.stop()
    check(rc == 0, 'exit status %s after SIGTERM' % rc, g.log_tail())
    banner = g.stdout()
    if '+tls-pin=' in banner:
        check('+tls-pin=' + pin in banner, 'the banner shows another pin than the '
              'presented key\'s (%s)' % pin, banner)


@suite.case
def test_config_file_run_and_flag_precedence(s):
    u = unbound(s)
    cert, key = certs(s)
    # config names a dead upstream; the flag replaces it
    conf = {'upstream': {'servers': ['udp://127.0.0.1:%d' % G.closed_port()],
                         'timeout_ms': 500, 'attempts': 1}}
    g = G.Gateway(s.binary, [], dot=True, dns=True, cert=cert, key=key, config=conf,
                  extra_args=['--upstream', 'udp://127.0.0.1:%d' % u.port])
    s.fixtures['gw_conf'] = g
    s.stoppers.append(g)
    g.start()
    G.expect_answer(G.dig(g.dns, 'www.example.test'), ['192.0.2.10'])
    G.expect_answer(G.kdig(g.dot, 'www.example.test', tls=True), ['192.0.2.10'])
    g.stopped_on_purpose = True
    check(g.stop() == 0, 'exit status after SIGTERM', g.log_tail())


@suite.case
def test_environment(s):
    u = unbound(s)
    base = {k: v for k, v in os.environ.items() if not k.startswith('DNSGW_')}
    # DNSGW_UPSTREAM alone
    env = dict(base, DNSGW_UPSTREAM='udp://127.0.0.1:%d' % u.port)
    g = G.Gateway(s.binary, [], dot=False, dns=True, env=env)
    s.fixtures['gw_env'] = g
    s.stoppers.append(g)
    g.start()
    G.expect_answer(G.dig(g.dns, 'www.example.test'), ['192.0.2.10'])
    g.stopped_on_purpose = True
    g.stop()
    # the flag wins over the environment
    env = dict(base, DNSGW_UPSTREAM='udp://127.0.0.1:%d' % G.closed_port())
    g = G.Gateway(s.binary, ['udp://127.0.0.1:%d' % u.port], dot=False, dns=True,
                  env=env)
    s.fixtures['gw_env2'] = g
    s.stoppers.append(g)
    g.start()
    G.expect_answer(G.dig(g.dns, 'www.example.test'), ['192.0.2.10'])
    g.stopped_on_purpose = True
    g.stop()
    # an unknown DNSGW_ variable is named
    r = dnsgw(s, '-t', '--listen', 'udp://127.0.0.1:%d' % G.free_port(), '--upstream',
              'udp://127.0.0.1:%d' % u.port, env=dict(base, DNSGW_BOGUS='1'))
    check(r.rc not in (0, 'timeout') and 'DNSGW_BOGUS' in r.err,
          'unknown DNSGW_BOGUS: status %s' % r.rc, r.describe())


@suite.case
def test_ready_log_is_logfmt(s):
    u = unbound(s)
    cert, key = certs(s)
    g = G.Gateway(s.binary, ['udp://127.0.0.1:%d' % u.port], dot=True, dns=True,
                  cert=cert, key=key)
    s.fixtures['gw_log'] = g
    s.stoppers.append(g)
    g.start()
    with g.lock:
        lines = list(g.lines)
    bad = [l for l in lines if l.strip() and not re.match(r'^\w[\w.-]*=', l)]
    g.stopped_on_purpose = True
    g.stop()
    check(not bad, 'stderr lines that are not logfmt: %s' % bad[:3], '\n'.join(lines))


@suite.case
def test_ready_means_listening(s):
    """msg=ready is logged only once every listener accepts connections."""
    u = unbound(s)
    cert, key = certs(s)
    for i in range(10):
        g = G.Gateway(s.binary, ['udp://127.0.0.1:%d' % u.port], dot=True, dns=True,
                      cert=cert, key=key)
        s.fixtures['gw_ready%d' % i] = g
        s.stoppers.append(g)
        g.start()
        refused = g.refused_after_ready
        g.stopped_on_purpose = True
        g.stop()
        check(not refused, 'start %d: TCP connect to port(s) %s refused right after '
              'msg=ready (listen() after the ready line?)' % (i + 1, refused),
              g.log_tail())


@suite.case
def test_sigterm_drains_inflight(s):
    r = responder(s)
    cert, key = certs(s)
    g = G.Gateway(s.binary, ['udp://127.0.0.1:%d' % r.port], dot=True, dns=True,
                  cert=cert, key=key)
    s.fixtures['gw_drain'] = g
    s.stoppers.append(g)
    g.start()
    c = G.StreamClient(g.dot, timeout=10)
    try:
        c.send_msg(W.build_query('slow-1000.drain.example.test', qid=77))
        time.sleep(0.3)
        g.stopped_on_purpose = True
        t0 = time.monotonic()
        g.proc.send_signal(signal.SIGTERM)
        try:
            m = c.recv_msg(8)
        except (G.Closed, OSError) as e:
            check(False, 'in-flight query lost on SIGTERM: %s' % e, g.log_tail())
        check(m.id == 77 and m.a_records() == ['192.0.2.1'], 'answer %r' % m)
    finally:
        c.close()
    try:
        rc = g.proc.wait(8)
    except Exception:
        rc = 'still running'
    check(rc == 0, 'exit status %s after SIGTERM' % rc, g.log_tail())
    check(time.monotonic() - t0 < 7, 'drain took %.1fs' % (time.monotonic() - t0))


if __name__ == '__main__':
    sys.exit(suite.main())
