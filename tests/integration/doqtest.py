"""Helpers for the DoQ integration tests (test_doq.py) and bench/doq.sh.

doq_client: tests/tools/doq_client (built next to dnsgw), one JSON object
per connection. kdig_quic: trixie's kdig 3.4 in the chroot made by
trixie-chroot.sh (bookworm's kdig has no +quic). Raw datagram helpers craft
the packets a QUIC stack would never send (Initials below 1200 bytes,
unknown versions, unknown short headers, reused Retry tokens).
"""

import json
import os
import re
import socket
import struct
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CHROOT_SH = os.path.join(HERE, 'trixie-chroot.sh')


def client_path(binary):
    return os.path.join(os.path.dirname(os.path.abspath(binary)), 'tests',
                        'tools', 'doq_client')


def doq_client(binary, port, case='normal', n=1, conns=1, timeout=8,
               extra=()):
    """Runs doq_client; returns the list of per-connection dicts."""
    args = [client_path(binary), '-s', '127.0.0.1', '-p', str(port), '-c',
            case, '-n', str(n), '-C', str(conns), '-t', str(timeout)]
    args += list(extra)
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout + 30)
    out = []
    for line in p.stdout.decode().splitlines():
        line = line.strip()
        if line.startswith('{'):
            out.append(json.loads(line))
    if not out:
        raise RuntimeError('doq_client printed nothing: rc=%d %s' %
                           (p.returncode, p.stderr.decode()[-500:]))
    return out


def chroot_ready():
    """Builds the trixie chroot once (cached); True when kdig runs."""
    if os.geteuid() != 0:
        return False
    r = subprocess.run([CHROOT_SH, 'setup'], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=1800)
    return r.returncode == 0


def kdig_quic(port, args, timeout=10):
    """trixie kdig +quic; returns (rc, stdout)."""
    r = subprocess.run([CHROOT_SH, 'kdig', '@127.0.0.1', '-p', str(port),
                        '+quic', '+timeout=3', '+retry=0'] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    return r.returncode, r.stdout.decode(errors='replace')


def kdig_answers(text):
    """[(name, type, rdata)] of the ANSWER sections in kdig output."""
    out = []
    sect = None
    for line in text.splitlines():
        if line.startswith(';; ANSWER SECTION'):
            sect = 'an'
            continue
        if line.startswith(';;') or not line.strip():
            if line.startswith(';; ') and sect == 'an':
                sect = None
            continue
        if sect == 'an':
            f = line.split()
            if len(f) >= 5:
                out.append((f[0], f[3], f[4]))
    return out


# ------------------------------------------------------------ raw packets

def _varint2(n):
    return struct.pack('!H', 0x4000 | n)


def long_header(version, dcid, scid, token=b'', size=1200, ptype=0):
    """An Initial-looking long-header datagram of exactly size bytes (the
    payload is random: no server can decrypt it, but header checks see it)."""
    hdr = bytes([0xc0 | (ptype << 4) | 0x00]) + struct.pack('!I', version)
    hdr += bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid
    if ptype == 0:
        hdr += bytes([len(token)]) + token if len(token) < 64 else \
            _varint2(len(token)) + token
    rest = size - len(hdr) - 2
    hdr += _varint2(rest)
    return hdr + os.urandom(rest)


def udp_exchange(port, datagrams, wait=1.0, sock=None):
    """Sends datagrams from one socket; returns every datagram received
    within wait seconds after the last send."""
    s = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.05)
    for d in datagrams:
        s.sendto(d, ('127.0.0.1', port))
    got = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < wait:
        try:
            got.append(s.recv(65535))
        except socket.timeout:
            pass
    if sock is None:
        s.close()
    return got


def parse_retry(pkt):
    """(scid, token) of a Retry packet (RFC 9000 17.2.5), or None."""
    if len(pkt) < 7 or not pkt[0] & 0x80 or (pkt[0] >> 4) & 3 != 3:
        return None
    i = 5
    dl = pkt[i]; i += 1 + dl
    sl = pkt[i]; scid = pkt[i + 1:i + 1 + sl]; i += 1 + sl
    return scid, pkt[i:-16]


def gauges(gw):
    """Last 'connection freed' gauges of a DoQ gateway's debug log."""
    with gw.lock:
        lines = list(gw.lines)
    for l in reversed(lines):
        if 'connection freed' in l and 'subsystem=doq' in l:
            m = dict(re.findall(r'(\w+)=(\d+)', l))
            return {k: int(m.get(k, -1)) for k in ('conns', 'streams', 'inflight')}
    return None
