#!/usr/bin/python3
"""Scripted fault-injecting DNS upstream for the dnsgw integration tests.

Listens on 127.0.0.1 UDP and TCP (same port). The behaviour is chosen by the
first label of the query name:

  slow-NNN     A 192.0.2.1 after NNN ms (other queries are not held back)
  drop         never answers
  tc           UDP: TC=1, empty answer; TCP: A 192.0.2.1
  wrongid      answers A 192.0.2.66 with a wrong message ID, then nothing
  wrongidok    wrong-ID answer (192.0.2.66), then the right one 200 ms later
  wrongq       answers A 192.0.2.67 for another question, then nothing
  wrongqok     mismatched-question answer, then the right one 200 ms later
  big          TXT answer of ~3000 bytes over TCP; TC=1 over UDP
  big-NNNNN    TXT answer of ~NNNNN bytes (<= 65000) over TCP; TC=1 over UDP
  size-NNNN    TXT answer of ~NNNN bytes; over UDP TC=1 only when it does not
               fit the query's EDNS buffer size (512 without EDNS)
  nx           NXDOMAIN with an SOA
  nxmin        NXDOMAIN with an SOA of TTL 3600 and MINIMUM 7 (RFC 2308)
  servfail     SERVFAIL
  refused      REFUSED
  anything else: A 192.0.2.1 TTL 60 (AAAA 2001:db8::1; other types: NODATA)

Every received message is appended to the log file (--log) as one JSON object
per line: t, transport, peer, len, parsed_len, trailing, id, opcode, qdcount,
arcount, qname, qtype, opt (null or {udp_size, options: [[code, hex]]}), ecs,
error (parse error) and hex (the raw message, first 2048 bytes).

Prints "READY port=N" on stdout once both sockets listen.
Usage: responder.py [--port N] [--log FILE]
"""

import argparse
import json
import os
import re
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dnswire as W  # noqa: E402

SOA = W.rr(b'\xc0\x0c', 'SOA',
           W.encode_name('ns.example.test') + W.encode_name('hostmaster.example.test') +
           struct.pack('!IIIII', 1, 3600, 600, 86400, 60), ttl=60)
SOA_MIN7 = W.rr(b'\xc0\x0c', 'SOA',
                W.encode_name('ns.example.test') + W.encode_name('hostmaster.example.test') +
                struct.pack('!IIIII', 1, 3600, 600, 86400, 7), ttl=3600)


class Responder:
    def __init__(self, port=0, log_path=None):
        self.log_path = log_path
        self.log_lock = threading.Lock()
        self.logf = open(log_path, 'a', buffering=1) if log_path else None
        self.udp, self.tcp = self._bind(port)
        self.port = self.udp.getsockname()[1]
        self.stopping = False

    @staticmethod
    def _bind(port):
        for _ in range(100):
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.bind(('127.0.0.1', port))
            p = u.getsockname()[1]
            t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                t.bind(('127.0.0.1', p))
            except OSError:
                u.close()
                t.close()
                if port:
                    raise
                continue
            t.listen(256)
            return u, t
        raise OSError('no free port pair')

    def start(self):
        for fn in (self._udp_loop, self._tcp_loop):
            threading.Thread(target=fn, daemon=True).start()

    # -- logging ---------------------------------------------------------

    def _log(self, transport, peer, raw, msg, err):
        if not self.logf:
            return
        rec = {'t': time.time(), 'transport': transport, 'peer': '%s:%d' % peer,
               'len': len(raw), 'hex': raw[:2048].hex(), 'error': err}
        if len(raw) >= 12:
            qid, flags, qd, an, ns, ar = struct.unpack('!HHHHHH', raw[:12])
            rec.update(id=qid, opcode=(flags >> 11) & 0xf, qdcount=qd, arcount=ar)
        if msg is not None:
            rec.update(parsed_len=msg.parsed_len,
                       trailing=len(raw) - msg.parsed_len,
                       qname=msg.qname, qtype=msg.qtype,
                       opt=None if msg.opt is None else {
                           'udp_size': msg.opt['udp_size'],
                           'options': [[c, d.hex()] for c, d in msg.opt['options']]},
                       ecs=msg.option(W.OPT_ECS) is not None)
        with self.log_lock:
            self.logf.write(json.dumps(rec) + '\n')

    # -- behaviour -------------------------------------------------------

    def plan(self, msg, transport):
        """Returns a list of (delay_s, response bytes)."""
        label = msg.qname.split('.')[0].lower() if msg.qname else ''
        qtype = msg.qtype

        def answer_a(ip='192.0.2.1', **kw):
            if qtype == 1:
                ans = [W.rr(b'\xc0\x0c', 'A', W.a_rdata(ip), 60)]
            elif qtype == 28:
                ans = [W.rr(b'\xc0\x0c', 'AAAA', bytes.fromhex('20010db8' + '0' * 23 + '1'), 60)]
            else:
                return W.build_response(msg, authority=[SOA], **kw)
            return W.build_response(msg, answers=ans, **kw)

        def txt(size):
            size = max(64, min(size, 65000))
            ans, total = [], 12 + len(msg.raw)
            i = 0
            while total < size:
                chunk = min(200, max(1, size - total - 13))
                text = (b'%04d-' % i + b'x' * 200)[:chunk]
                r = W.rr(b'\xc0\x0c', 'TXT', bytes([len(text)]) + text, 60)
                ans.append(r)
                total += len(r)
                i += 1
            return W.build_response(msg, answers=ans)

        if msg.opcode != 0:
            return [(0, W.build_response(msg, rcode=4))]
        m = re.fullmatch(r'slow-(\d+)', label)
        if m:
            return [(int(m.group(1)) / 1000.0, answer_a())]
        if label == 'drop':
            return []
        if label == 'tc':
            if transport == 'udp':
                return [(0, W.build_response(msg, tc=True))]
            return [(0, answer_a())]
        if label in ('wrongid', 'wrongidok'):
            out = [(0, answer_a('192.0.2.66', qid=msg.id ^ 0x5a5a))]
            if label == 'wrongidok':
                out.append((0.2, answer_a()))
            return out
        if label in ('wrongq', 'wrongqok'):
            bad = W.build_response(msg, question=('other.example.test', 'A'),
                                   answers=[W.rr(b'\xc0\x0c', 'A', W.a_rdata('192.0.2.67'))])
            out = [(0, bad)]
            if label == 'wrongqok':
                out.append((0.2, answer_a()))
            return out
        m = re.fullmatch(r'big(?:-(\d+))?', label)
        if m:
            if transport == 'udp':
                return [(0, W.build_response(msg, tc=True))]
            return [(0, txt(int(m.group(1) or 3000)))]
        m = re.fullmatch(r'size-(\d+)', label)
        if m:
            resp = txt(int(m.group(1)))
            limit = max(512, msg.opt['udp_size']) if msg.opt else 512
            if transport == 'udp' and len(resp) > limit:
                return [(0, W.build_response(msg, tc=True))]
            return [(0, resp)]
        if label == 'nx':
            return [(0, W.build_response(msg, rcode=3, authority=[SOA]))]
        if label == 'nxmin':
            return [(0, W.build_response(msg, rcode=3, authority=[SOA_MIN7]))]
        if label == 'servfail':
            return [(0, W.build_response(msg, rcode=2))]
        if label == 'refused':
            return [(0, W.build_response(msg, rcode=5))]
        return [(0, answer_a())]

    def _handle(self, raw, transport, peer, send, timers=None):
        msg, err = None, None
        try:
            msg = W.parse(raw)
        except Exception as e:  # malformed input is logged, answered FORMERR
            err = str(e)
        self._log(transport, peer, raw, msg, err)
        if msg is None:
            if len(raw) >= 12:
                send(raw[:2] + b'\x80\x01' + b'\x00' * 8)
            return
        if msg.qr:
            return
        for delay, resp in self.plan(msg, transport):
            if delay <= 0:
                send(resp)
            else:
                t = threading.Timer(delay, send, (resp,))
                t.daemon = True
                t.start()
                if timers is not None:
                    timers.append(t)

    # -- transports ------------------------------------------------------

    def _udp_loop(self):
        while not self.stopping:
            try:
                raw, peer = self.udp.recvfrom(65535)
            except OSError:
                return

            def send(resp, peer=peer):
                try:
                    self.udp.sendto(resp, peer)
                except OSError:
                    pass
            self._handle(raw, 'udp', peer, send)

    def _tcp_loop(self):
        while not self.stopping:
            try:
                conn, peer = self.tcp.accept()
            except OSError:
                return
            threading.Thread(target=self._tcp_conn, args=(conn, peer),
                             daemon=True).start()

    def _tcp_conn(self, conn, peer):
        lock = threading.Lock()

        def send(resp):
            with lock:
                try:
                    conn.sendall(W.frame(resp))
                except OSError:
                    pass
        buf = b''
        timers = []
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                buf += data
                while len(buf) >= 2:
                    n = struct.unpack('!H', buf[:2])[0]
                    if len(buf) < 2 + n:
                        break
                    raw, buf = buf[2:2 + n], buf[2 + n:]
                    self._handle(raw, 'tcp', peer, send, timers)
                    timers[:] = [t for t in timers if t.is_alive()]
        except OSError:
            pass
        finally:
            # the peer half-closed: delayed answers still go out first
            for t in timers:
                t.join(70)
            conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--port', type=int, default=0)
    ap.add_argument('--log')
    a = ap.parse_args()
    r = Responder(a.port, a.log)
    r.start()
    print('READY port=%d' % r.port, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == '__main__':
    main()
