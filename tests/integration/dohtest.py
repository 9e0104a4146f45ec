"""DoH helpers for test_doh.py (Python 3 stdlib only): a raw HTTP/2 client
built from hand-made frames (enough to send requests, resets, pings and to
see SETTINGS, GOAWAY, RST_STREAM, HEADERS and DATA come back) and a curl
wrapper that returns status, headers and the decoded DNS answer.

HPACK: requests use "literal header field without indexing, new name" with
raw (non-Huffman) strings, so no table state is needed on our side. Response
header blocks are not decoded (curl covers response headers); frames are.
"""

import base64
import os
import re
import socket
import ssl
import struct
import subprocess
import time

import gwtest as G
import dnswire as W

PREFACE = b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = \
    0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
NO_ERROR, REFUSED_STREAM, CANCEL, ENHANCE_YOUR_CALM = 0x0, 0x7, 0x8, 0xb


def b64url(wire):
    return base64.urlsafe_b64encode(wire).rstrip(b'=').decode()


def hpack_int(value, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7f) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_str(s):
    if isinstance(s, str):
        s = s.encode()
    return hpack_int(len(s), 7) + s


def hpack_block(headers):
    out = b''
    for name, value in headers:
        out += b'\x00' + hpack_str(name) + hpack_str(value)
    return out


def frame(ftype, flags, stream, payload=b''):
    return struct.pack('!I', len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack('!I', stream & 0x7fffffff) + payload


class H2Client:
    """A raw HTTP/2 client over TLS (ALPN h2) or cleartext (prior knowledge)."""

    def __init__(self, port, tls=True, host='127.0.0.1', timeout=5.0,
                 rcvbuf=None, settings=b''):
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(timeout)
        raw.connect((host, port))
        self.local_port = raw.getsockname()[1]
        self.sock = raw
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(['h2'])
            self.sock = ctx.wrap_socket(raw)
            assert self.sock.selected_alpn_protocol() == 'h2', \
                self.sock.selected_alpn_protocol()
        self.buf = b''
        self.next_id = 1
        self.closed = False
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0, settings))

    def send(self, data):
        self.sock.sendall(data)

    def request_frames(self, path, method='GET', body=None, extra=(),
                       authority='127.0.0.1'):
        sid = self.next_id
        self.next_id += 2
        hdrs = [(':method', method), (':scheme', 'https'),
                (':authority', authority), (':path', path)] + list(extra)
        if body is not None:
            hdrs.append(('content-type', 'application/dns-message'))
        flags = END_HEADERS | (END_STREAM if body is None else 0)
        out = frame(HEADERS, flags, sid, hpack_block(hdrs))
        if body is not None:
            out += frame(DATA, END_STREAM, sid, body)
        return sid, out

    def get(self, wire, path='/dns-query', extra=()):
        sid, data = self.request_frames('%s?dns=%s' % (path, b64url(wire)),
                                        extra=extra)
        self.send(data)
        return sid

    def read_frame(self, timeout=None):
        """(type, flags, stream, payload); raises G.Closed on EOF."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        while True:
            if len(self.buf) >= 9:
                n = struct.unpack('!I', b'\x00' + self.buf[:3])[0]
                if len(self.buf) >= 9 + n:
                    t, f = self.buf[3], self.buf[4]
                    s = struct.unpack('!I', self.buf[5:9])[0] & 0x7fffffff
                    p = self.buf[9:9 + n]
                    self.buf = self.buf[9 + n:]
                    return t, f, s, p
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError) as e:
                self.closed = True
                raise G.Closed(str(e))
            if not data:
                self.closed = True
                raise G.Closed('EOF')
            self.buf += data

    def frames_until(self, pred, timeout=5.0):
        """Reads frames until pred(frame) is true or the connection closes.
        Returns (all frames read, matched frame or None)."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return got, None
            try:
                fr = self.read_frame(left)
            except (socket.timeout, TimeoutError):
                return got, None
            except G.Closed:
                return got, None
            got.append(fr)
            if fr[0] == SETTINGS and not fr[1] & ACK:
                try:
                    self.send(frame(SETTINGS, ACK, 0))
                except OSError:
                    pass
            if pred(fr):
                return got, fr

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def settings_of(payload):
    out = {}
    for i in range(0, len(payload) - 5, 6):
        k, v = struct.unpack('!HI', payload[i:i + 6])
        out[k] = v
    return out


def goaway_of(payload):
    last, code = struct.unpack('!II', payload[:8])
    return last & 0x7fffffff, code


class CurlResult:
    def __init__(self, r, body):
        self.r = r
        self.body = body
        self.status = None
        self.headers = {}
        # the last response's head (curl -D - prints every head)
        heads = re.split(r'\r?\n\r?\n', r.out.strip())
        for head in heads:
            lines = head.splitlines()
            if lines and lines[0].startswith('HTTP/'):
                self.version = lines[0].split()[0]
                self.status = int(lines[0].split()[1])
                self.headers = {}
                for l in lines[1:]:
                    if ':' in l:
                        k, v = l.split(':', 1)
                        self.headers.setdefault(k.strip().lower(), v.strip())
        self.msg = None
        if self.status == 200 and body:
            self.msg = W.parse(body)

    def describe(self):
        return self.r.describe() + '\nbody: %r' % self.body[:200]


def curl(url, http='2', method=None, body=None, headers=(), extra=(),
         timeout=10, tmp='/tmp'):
    """Runs curl; returns a CurlResult (status, headers, msg)."""
    out = os.path.join(tmp, 'curl-body-%d-%d' % (os.getpid(), time.monotonic_ns()))
    args = ['curl', '-sS', '-k', '-D', '-', '-o', out, '--max-time', str(timeout)]
    if http == '2':
        args.append('--http2')
    elif http == '2pk':
        args.append('--http2-prior-knowledge')
    else:
        args.append('--http1.1')
    for h in headers:
        args += ['-H', h]
    if body is not None:
        bpath = out + '.req'
        with open(bpath, 'wb') as f:
            f.write(body)
        args += ['--data-binary', '@' + bpath]
        if not any(h.lower().startswith('content-type') for h in headers):
            args += ['-H', 'content-type: application/dns-message']
    if method is not None:
        args += ['-X', method]
    args += list(extra) + [url]
    r = G.run(args, timeout=timeout + 10)
    try:
        with open(out, 'rb') as f:
            data = f.read()
        os.unlink(out)
    except OSError:
        data = b''
    return CurlResult(r, data)


def fd_count(pid):
    return len(os.listdir('/proc/%d/fd' % pid))


def rss_kb(pid):
    with open('/proc/%d/status' % pid) as f:
        for l in f:
            if l.startswith('VmRSS:'):
                return int(l.split()[1])
    return 0
