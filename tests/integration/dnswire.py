"""Minimal DNS wire format reader/writer for the integration tests.

Python 3 stdlib only. Hand-built on purpose: the tests must be able to send
malformed messages (wrong counts, trailing bytes, bad options) that a real DNS
library would refuse to produce.
"""

import random
import struct

TYPES = {'A': 1, 'NS': 2, 'CNAME': 5, 'SOA': 6, 'PTR': 12, 'MX': 15,
         'TXT': 16, 'AAAA': 28, 'SRV': 33, 'OPT': 41, 'AXFR': 252, 'ANY': 255}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
RCODES = {0: 'NOERROR', 1: 'FORMERR', 2: 'SERVFAIL', 3: 'NXDOMAIN',
          4: 'NOTIMP', 5: 'REFUSED', 16: 'BADVERS'}
OPCODE_QUERY, OPCODE_NOTIFY, OPCODE_UPDATE = 0, 4, 5

OPT_ECS = 8          # RFC 7871
OPT_KEEPALIVE = 11   # RFC 7828
OPT_PADDING = 12     # RFC 7830
OPT_EDE = 15         # RFC 8914


def qtype_num(t):
    if isinstance(t, int):
        return t
    return TYPES[t.upper()]


def encode_name(name):
    name = name.rstrip('.')
    out = b''
    if name:
        for label in name.split('.'):
            raw = label.encode('ascii')
            if not 0 < len(raw) < 64:
                raise ValueError('bad label in %r' % name)
            out += bytes([len(raw)]) + raw
    return out + b'\x00'


def decode_name(buf, off):
    """Returns (name, offset after the name at off). Follows compression
    pointers with a hop limit (no loops)."""
    labels = []
    end = None
    hops = 0
    while True:
        if off >= len(buf):
            raise ValueError('name runs past end')
        n = buf[off]
        if n & 0xc0 == 0xc0:
            if off + 1 >= len(buf):
                raise ValueError('truncated pointer')
            if end is None:
                end = off + 2
            off = ((n & 0x3f) << 8) | buf[off + 1]
            hops += 1
            if hops > 64:
                raise ValueError('compression loop')
            continue
        if n & 0xc0:
            raise ValueError('bad label type')
        off += 1
        if n == 0:
            break
        if off + n > len(buf):
            raise ValueError('label runs past end')
        labels.append(buf[off:off + n].decode('ascii', 'replace'))
        off += n
    if end is None:
        end = off
    return '.'.join(labels) + '.', end


def opt_rr(udp_size=1232, options=(), ext_rcode=0, version=0, do=False):
    """An OPT pseudo-RR (RFC 6891). options: iterable of (code, bytes)."""
    rdata = b''.join(struct.pack('!HH', c, len(d)) + d for c, d in options)
    ttl = (ext_rcode << 24) | (version << 16) | (0x8000 if do else 0)
    return b'\x00' + struct.pack('!HHIH', 41, udp_size, ttl, len(rdata)) + rdata


def ecs_option(prefix='192.0.2.0', source=24):
    addr = bytes(int(x) for x in prefix.split('.'))
    nbytes = (source + 7) // 8
    return (OPT_ECS, struct.pack('!HBB', 1, source, 0) + addr[:nbytes])


def build_query(qname, qtype='A', qid=None, rd=True, opcode=OPCODE_QUERY,
                edns=True, udp_size=1232, options=(), qdcount=None,
                questions=None, trailing=b'', flags=None):
    """A query message. questions overrides (qname, qtype) with a list of
    (name, type); qdcount overrides the header count (to lie)."""
    if qid is None:
        qid = random.randint(0, 0xffff)
    if questions is None:
        questions = [(qname, qtype)]
    if flags is None:
        flags = (opcode & 0xf) << 11
        if rd:
            flags |= 0x0100
    qd = qdcount if qdcount is not None else len(questions)
    ar = 1 if edns else 0
    msg = struct.pack('!HHHHHH', qid, flags, qd, 0, 0, ar)
    for n, t in questions:
        msg += encode_name(n) + struct.pack('!HH', qtype_num(t), 1)
    if edns:
        msg += opt_rr(udp_size, options)
    return msg + trailing


class Msg:
    """A parsed message. Attributes: id, flags, qr, opcode, aa, tc, rd, ra,
    rcode (with the EDNS extension), counts, questions [(name, type, class)],
    answers/authority/additional [(name, type, class, ttl, rdata)], opt (dict
    or None: udp_size, version, do, options [(code, bytes)]), parsed_len
    (bytes up to the end of the last record) and raw."""

    def __init__(self, raw):
        self.raw = raw
        if len(raw) < 12:
            raise ValueError('short message (%d bytes)' % len(raw))
        (self.id, self.flags, qd, an, ns, ar) = struct.unpack('!HHHHHH', raw[:12])
        self.counts = (qd, an, ns, ar)
        self.qr = bool(self.flags & 0x8000)
        self.opcode = (self.flags >> 11) & 0xf
        self.aa = bool(self.flags & 0x0400)
        self.tc = bool(self.flags & 0x0200)
        self.rd = bool(self.flags & 0x0100)
        self.ra = bool(self.flags & 0x0080)
        self.rcode = self.flags & 0xf
        self.questions, self.answers, self.authority, self.additional = [], [], [], []
        self.opt = None
        off = 12
        for _ in range(qd):
            name, off = decode_name(raw, off)
            if off + 4 > len(raw):
                raise ValueError('truncated question')
            t, c = struct.unpack('!HH', raw[off:off + 4])
            off += 4
            self.questions.append((name, t, c))
        for section, count in ((self.answers, an), (self.authority, ns),
                               (self.additional, ar)):
            for _ in range(count):
                name, off = decode_name(raw, off)
                if off + 10 > len(raw):
                    raise ValueError('truncated RR header')
                t, c, ttl, rdlen = struct.unpack('!HHIH', raw[off:off + 10])
                off += 10
                if off + rdlen > len(raw):
                    raise ValueError('truncated rdata')
                rdata = raw[off:off + rdlen]
                off += rdlen
                if t == 41:
                    if self.opt is not None:
                        raise ValueError('two OPT records')
                    opts, o = [], 0
                    while o + 4 <= len(rdata):
                        oc, ol = struct.unpack('!HH', rdata[o:o + 4])
                        opts.append((oc, rdata[o + 4:o + 4 + ol]))
                        o += 4 + ol
                    self.opt = {'udp_size': c, 'ext_rcode': ttl >> 24,
                                'version': (ttl >> 16) & 0xff,
                                'do': bool(ttl & 0x8000), 'options': opts}
                    self.rcode |= (ttl >> 24) << 4
                else:
                    section.append((name, t, c, ttl, rdata))
        self.parsed_len = off

    @property
    def rcode_name(self):
        return RCODES.get(self.rcode, str(self.rcode))

    @property
    def qname(self):
        return self.questions[0][0] if self.questions else None

    @property
    def qtype(self):
        return self.questions[0][1] if self.questions else None

    def option(self, code):
        """Data of the first EDNS option with this code, or None."""
        if not self.opt:
            return None
        for c, d in self.opt['options']:
            if c == code:
                return d
        return None

    def a_records(self):
        return ['.'.join(str(b) for b in r[4]) for r in self.answers
                if r[1] == 1 and len(r[4]) == 4]

    def txt_bytes(self):
        """Total TXT payload bytes in the answer section."""
        return sum(len(r[4]) for r in self.answers if r[1] == 16)

    def __repr__(self):
        return ('<Msg id=%d %s opcode=%d tc=%d q=%s an=%d ns=%d len=%d>' %
                (self.id, self.rcode_name, self.opcode, self.tc,
                 self.questions, len(self.answers), len(self.authority),
                 len(self.raw)))


def parse(raw):
    return Msg(raw)


def build_response(query, rcode=0, answers=(), authority=(), tc=False,
                   aa=True, qid=None, question=None, edns=None):
    """A response to a parsed query (Msg). answers/authority: lists of raw RR
    bytes. question: override (name, type) to send a mismatched question.
    edns: None = mirror the query's OPT (without options), False = none."""
    flags = 0x8000 | (query.opcode << 11) | (query.flags & 0x0100) | 0x0080
    if aa:
        flags |= 0x0400
    if tc:
        flags |= 0x0200
    flags |= rcode & 0xf
    with_opt = (query.opt is not None) if edns is None else bool(edns)
    if question is None and query.questions:
        q = encode_name(query.questions[0][0]) + struct.pack(
            '!HH', query.questions[0][1], query.questions[0][2])
        qd = 1
    elif question is not None:
        q = encode_name(question[0]) + struct.pack('!HH', qtype_num(question[1]), 1)
        qd = 1
    else:
        q, qd = b'', 0
    msg = struct.pack('!HHHHHH', query.id if qid is None else qid, flags, qd,
                      len(answers), len(authority), 1 if with_opt else 0)
    msg += q + b''.join(answers) + b''.join(authority)
    if with_opt:
        msg += opt_rr(1232, ext_rcode=rcode >> 4)
    return msg


def rr(name, rtype, rdata, ttl=60):
    """A resource record. name may be bytes (e.g. b'\\xc0\\x0c' pointer)."""
    nb = name if isinstance(name, bytes) else encode_name(name)
    return nb + struct.pack('!HHIH', qtype_num(rtype), 1, ttl, len(rdata)) + rdata


def a_rdata(ip):
    return bytes(int(x) for x in ip.split('.'))


def frame(msg):
    """RFC 1035 4.2.2 / RFC 7858: two-byte length prefix."""
    return struct.pack('!H', len(msg)) + msg
