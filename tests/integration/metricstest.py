"""Reading the admin listener from tests: a raw HTTP/1.1 GET, the
Prometheus text format parsed into {(name, labels): value}, and every
scrape validated by `promtool check metrics` (Debian's prometheus package,
installed by deps.sh --test)."""

import re
import socket
import subprocess

from gwtest import check


def http(port, raw, timeout=5.0):
    """Sends raw bytes, reads to EOF: (status or None, headers dict, body)."""
    with socket.create_connection(('127.0.0.1', port), timeout=timeout) as c:
        c.sendall(raw)
        data = b''
        while True:
            b = c.recv(65536)
            if not b:
                break
            data += b
    head, _, body = data.partition(b'\r\n\r\n')
    lines = head.decode(errors='replace').split('\r\n')
    m = re.match(r'HTTP/1\.1 (\d{3}) ', lines[0] if lines else '')
    hdrs = {}
    for l in lines[1:]:
        k, _, v = l.partition(':')
        hdrs[k.strip().lower()] = v.strip()
    return (int(m.group(1)) if m else None), hdrs, body


def get(port, path, method='GET'):
    return http(port, ('%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n'
                       'User-Agent: test_admin\r\n\r\n' % (method, path)).encode())


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """{(name, frozenset(labels.items())): float}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith('#'):
            continue
        m = SAMPLE.match(line)
        check(m is not None, 'unparsable sample line %r' % line)
        labels = frozenset(LABEL.findall(m.group(3) or ''))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def val(ms, name, **labels):
    return ms.get((name, frozenset(labels.items())), 0.0)


def promtool_check(text):
    p = subprocess.run(['promtool', 'check', 'metrics'], input=text.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=30)
    out = p.stdout.decode(errors='replace')
    check(p.returncode == 0 and not out.strip(),
          'promtool check metrics: rc %d: %s' % (p.returncode, out[:500]),
          out[:3000])


def scrape(port, validate=True):
    st, h, body = get(port, '/metrics')
    check(st == 200, '/metrics status %s' % st)
    check(h.get('content-type', '').startswith('text/plain; version=0.0.4'),
          'content type %r' % h.get('content-type'))
    check(int(h.get('content-length', -1)) == len(body),
          'content-length %s, body %d' % (h.get('content-length'), len(body)))
    text = body.decode()
    if validate:
        promtool_check(text)
    return parse_metrics(text), text
