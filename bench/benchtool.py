#!/usr/bin/python3
"""Helpers for bench/dot.sh (stdlib only; loopback only).

Subcommands:
  ports N                      print N free TCP/UDP ports on 127.0.0.1
  queries FILE N               write N unique random names under bench.test
  wait-dot PORT CERT SECS      wait until a DoT handshake on PORT succeeds
  rss PID                      print VmRSS of PID in KiB
  idle PORT CERT PID N OUT [LABEL]  open N idle DoT connections, measure PID's RSS
  dnsperf OUT LABEL            parse a dnsperf -v output into OUT (JSON)
  h2load STDOUT LOG OUT LABEL  parse h2load's summary and --log-file into OUT
  table OUTDIR                 print the side-by-side table from OUTDIR/*.json

Every figure lands as JSON in the run directory, so the table can be
reprinted from saved results.
"""

import json
import os
import random
import re
import resource
import select
import socket
import ssl
import sys
import time


def cmd_ports(n):
	socks, ports = [], []
	while len(ports) < int(n):
		t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
		t.bind(("127.0.0.1", 0))
		p = t.getsockname()[1]
		u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
		try:
			u.bind(("127.0.0.1", p))
		except OSError:
			t.close()
			u.close()
			continue
		socks += [t, u]
		ports.append(p)
	print(" ".join(str(p) for p in ports))
	for s in socks:
		s.close()


def cmd_queries(path, n):
	n = int(n)
	r = random.Random()
	seen = set()
	with open(path, "w") as f:
		while len(seen) < n:
			v = r.getrandbits(40)
			if v in seen:
				continue
			seen.add(v)
			f.write("r%010x.bench.test A\n" % v)


def tls_ctx(cert):
	ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
	ctx.load_verify_locations(cert)
	ctx.check_hostname = True
	ctx.set_alpn_protocols(["dot"])
	return ctx


def dot_connect(ctx, port, timeout=5.0):
	raw = socket.create_connection(("127.0.0.1", int(port)), timeout=timeout)
	return ctx.wrap_socket(raw, server_hostname="bench.test")


def cmd_wait_dot(port, cert, secs):
	ctx = tls_ctx(cert)
	end = time.monotonic() + float(secs)
	while True:
		try:
			s = dot_connect(ctx, port, 1.0)
			s.close()
			return 0
		except (OSError, ssl.SSLError) as e:
			if time.monotonic() > end:
				print("wait-dot: %s" % e, file=sys.stderr)
				return 1
			time.sleep(0.1)


def rss_kib(pid):
	with open("/proc/%d/status" % int(pid)) as f:
		for line in f:
			if line.startswith("VmRSS:"):
				return int(line.split()[1])
	raise RuntimeError("no VmRSS for %s" % pid)


def dot_query(s, name):
	"""One A query over an open DoT socket; returns the RCODE."""
	q = bytearray(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00")
	for lab in name.split("."):
		if lab:
			q += bytes([len(lab)]) + lab.encode()
	q += b"\x00\x00\x01\x00\x01"
	s.sendall(len(q).to_bytes(2, "big") + q)
	buf = b""
	while len(buf) < 2 or len(buf) < 2 + int.from_bytes(buf[:2], "big"):
		d = s.recv(4096)
		if not d:
			raise OSError("closed")
		buf += d
	return buf[5] & 0x0F


def cmd_idle(port, cert, pid, n, out, label="idle"):
	"""
	Opens n DoT connections (TLS handshake completed, nothing sent), holds
	them idle, and reports the server's RSS growth per connection. One
	query on a separate connection first, so that lazily built state (TLS
	context, upstream socket) is already in the baseline.
	"""
	n, pid = int(n), int(pid)
	soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
	if soft < n + 64:
		resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 256), hard))
	ctx = tls_ctx(cert)
	w = dot_connect(ctx, port)
	rc = dot_query(w, "warmup.bench.test")
	w.close()
	time.sleep(1.0)
	before = rss_kib(pid)
	conns, failed = [], 0
	t0 = time.monotonic()
	for i in range(n):
		try:
			conns.append(dot_connect(ctx, port))
		except (OSError, ssl.SSLError):
			failed += 1
	t_open = time.monotonic() - t0
	# TLS 1.3 servers send NewSessionTicket after the handshake: read what
	# is pending so it does not sit in the server's socket buffers.
	for s in conns:
		s.setblocking(False)
		try:
			s.recv(4096)
		except (ssl.SSLWantReadError, BlockingIOError):
			pass
		except (OSError, ssl.SSLError):
			pass
	time.sleep(2.0)
	after = rss_kib(pid)
	# Still open? A closed connection is readable (EOF or alert); an idle
	# one that the server keeps is not. poll(), as select() stops at 1024.
	alive = 0
	for s in conns:
		p = select.poll()
		p.register(s.fileno(), select.POLLIN)
		if not p.poll(0):
			alive += 1
			continue
		try:
			if s.recv(1):
				alive += 1
		except (ssl.SSLWantReadError, BlockingIOError):
			alive += 1
		except (OSError, ssl.SSLError):
			pass
	# One query on a fresh connection while the idle ones are held: the
	# server must still serve.
	try:
		w = dot_connect(ctx, port)
		served = dot_query(w, "during.bench.test") == 0
		w.close()
	except (OSError, ssl.SSLError):
		served = False
	for s in conns:
		try:
			s.close()
		except OSError:
			pass
	res = {
		"warmup_rcode": rc, "requested": n, "opened": len(conns),
		"failed": failed, "alive": alive, "served_during": served,
		"open_seconds": round(t_open, 2), "rss_before_kib": before,
		"rss_after_kib": after,
		"kib_per_conn": round((after - before) / max(alive, 1), 2),
	}
	with open(out, "w") as f:
		json.dump(res, f, indent=1)
	print("%s idle: %d/%d held, RSS %d -> %d KiB, %.2f KiB/conn" % (
		label, alive, n, before, after, res["kib_per_conn"]))
	return 0


STAT_RE = {
	"sent": r"Queries sent:\s+(\d+)",
	"completed": r"Queries completed:\s+(\d+)",
	"lost": r"Queries lost:\s+(\d+)",
	"qps": r"Queries per second:\s+([\d.]+)",
	"avg_latency_s": r"Average Latency \(s\):\s+([\d.]+)",
	"runtime_s": r"Run time \(s\):\s+([\d.]+)",
	"reconnections": r"Reconnections:\s+(\d+)",
}


def pct(sorted_vals, p):
	if not sorted_vals:
		return None
	k = min(len(sorted_vals) - 1, int(round(p / 100.0 * (len(sorted_vals) - 1))))
	return sorted_vals[k]


def cmd_dnsperf(path, out, label):
	"""Parses dnsperf -v: '> RCODE name type latency' per answer."""
	lat, rcodes, text = [], {}, []
	with open(path, errors="replace") as f:
		for line in f:
			if line.startswith("> "):
				p = line.split()
				if len(p) >= 5 and p[1] not in ("T", "I"):
					rcodes[p[1]] = rcodes.get(p[1], 0) + 1
					try:
						lat.append(float(p[-1]))
					except ValueError:
						pass
				else:
					rcodes[p[1]] = rcodes.get(p[1], 0) + 1
			else:
				text.append(line)
	body = "".join(text)
	res = {"label": label}
	# The first "Average Latency" is the queries'; the one under
	# "Connection Statistics" is the connection set-up's.
	for k, rx in STAT_RE.items():
		m = re.search(rx, body)
		res[k] = float(m.group(1)) if m else None
	m = re.search(r"Connection Statistics:.*?Average Latency \(s\):\s+([\d.]+)",
		      body, re.S)
	res["conn_latency_ms"] = round(float(m.group(1)) * 1000, 1) if m else None
	lat.sort()
	for p in (50, 90, 99, 99.9):
		v = pct(lat, p)
		res["p%s_ms" % str(p).replace(".", "_")] = (
			round(v * 1000, 3) if v is not None else None)
	res["max_ms"] = round(lat[-1] * 1000, 3) if lat else None
	res["rcodes"] = rcodes
	with open(out, "w") as f:
		json.dump(res, f, indent=1)
	print("%s: %.0f qps, p50 %s ms, p99 %s ms, lost %s" % (
		label, res["qps"] or 0, res["p50_ms"], res["p99_ms"], res["lost"]))
	return 0


def cmd_h2load(path, log, out, label):
	"""
	h2load's summary (stdout) and its --log-file, one line per finished
	request: start (us since the epoch), HTTP status, duration (us).
	Percentiles are over the 200 answers; anything started and not
	answered with 200 counts as lost.
	"""
	with open(path, errors="replace") as f:
		body = f.read()
	res = {"label": label}
	m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", body)
	secs = None
	if m:
		secs = float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)
	m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, "
		      r"(\d+) succeeded, (\d+) failed, (\d+) errored, "
		      r"(\d+) timeout", body)
	lat, codes = [], {}
	first, last = None, None
	try:
		with open(log) as f:
			for line in f:
				p = line.split()
				if len(p) < 3:
					continue
				codes[p[1]] = codes.get(p[1], 0) + 1
				if p[1] != "200":
					continue
				t0, d = int(p[0]), int(p[2])
				lat.append(d / 1e6)
				first = t0 if first is None else min(first, t0)
				last = t0 + d if last is None else max(last, t0 + d)
	except OSError:
		pass
	ok = codes.get("200", 0)
	# Requests still in flight when a timed run stops are neither answers
	# nor losses; lost = failed (non-2xx), errored and timed out.
	res["sent"] = int(m.group(3)) if m else None
	res["completed"] = ok
	res["lost"] = (int(m.group(5)) + int(m.group(6)) + int(m.group(7))
		       if m else None)
	# Rate over the span from the first request to the last answer: for
	# -D runs that is the duration; for a timing script it leaves out the
	# handshakes before the first request.
	span = (last - first) / 1e6 if lat and last > first else secs
	res["runtime_s"] = round(span, 3) if span else None
	res["qps"] = round(ok / span, 1) if span else None
	res["avg_latency_s"] = (sum(lat) / len(lat)) if lat else None
	m = re.search(r"time for connect:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", body)
	if m:
		v = float(m.group(1))
		res["conn_latency_ms"] = round(
			v / 1000.0 if m.group(2) == "us" else
			v * 1000.0 if m.group(2) == "s" else v, 1)
	else:
		res["conn_latency_ms"] = None
	lat.sort()
	for p in (50, 90, 99, 99.9):
		v = pct(lat, p)
		res["p%s_ms" % str(p).replace(".", "_")] = (
			round(v * 1000, 3) if v is not None else None)
	res["max_ms"] = round(lat[-1] * 1000, 3) if lat else None
	res["http_status"] = codes
	with open(out, "w") as f:
		json.dump(res, f, indent=1)
	print("%s: %.0f qps, p50 %s ms, p99 %s ms, lost %s" % (
		label, res["qps"] or 0, res["p50_ms"], res["p99_ms"], res["lost"]))
	return 0


def load_json(d, name):
	try:
		with open(os.path.join(d, name)) as f:
			return json.load(f)
	except (OSError, ValueError):
		return None


def best(d, peer, load, rounds):
	"""
	Among rounds, the least disturbed one: the highest QPS for the
	unlimited load; for a fixed-rate load (where every round reaches the
	rate) the lowest p99.
	"""
	got = [load_json(d, "%s.%s.r%d.json" % (peer, load, r))
	       for r in range(1, rounds + 1)]
	got = [g for g in got if g and g.get("qps") is not None]
	if not got:
		return None
	if load == "miss":
		return max(got, key=lambda g: g["qps"])
	return min(got, key=lambda g: (-round(g["qps"] / 20.0),
				       g.get("p99_ms") or 1e9))


def fmt(v, nd=1):
	if v is None:
		return "n/a"
	if isinstance(v, float) and nd == 0:
		return "%.0f" % v
	return ("%." + str(nd) + "f") % v if isinstance(v, (int, float)) else str(v)


def cmd_table(d):
	meta = load_json(d, "meta.json") or {}
	rounds = int(meta.get("rounds", 1))
	peers = ("dnsgw", "dnsdist")
	rows = []
	for load, title in (("miss", meta.get("miss_desc", "cache-miss")),
			    ("conns", meta.get("conns_desc", "many connections"))):
		b = {p: best(d, p, load, rounds) for p in peers}
		for key, name, nd, hib in (
				("qps", "QPS", 0, True),
				("p50_ms", "latency p50 (ms)", 3, False),
				("p90_ms", "latency p90 (ms)", 3, False),
				("p99_ms", "latency p99 (ms)", 3, False),
				("max_ms", "latency max (ms)", 1, False),
				("lost", "queries lost", 0, False),
				("conn_latency_ms", "connection set-up avg (ms)", 1,
				 False)):
			v = {p: (b[p] or {}).get(key) for p in peers}
			rows.append(("%s: %s" % (title, name), v, nd, hib))
	idle = {p: {} for p in peers}
	for p in peers:
		got = [load_json(d, "%s.idle.r%d.json" % (p, r))
		       for r in range(1, rounds + 1)]
		got = [g for g in got if g]
		if got:
			# The median round, not the best: memory is not disturbed by
			# other load the way throughput is.
			got.sort(key=lambda g: g["kib_per_conn"])
			idle[p] = got[len(got) // 2]
	n = meta.get("idle_conns", "?")
	for key, name, nd in (
			("rss_before_kib", "idle: RSS before (KiB)", 0),
			("rss_after_kib", "idle: RSS with %s conns (KiB)" % n, 0),
			("alive", "idle: connections held", 0),
			("kib_per_conn", "idle: RSS per idle %s conn (KiB)" %
			 meta.get("idle_kind", "DoT"), 2)):
		rows.append((name, {p: idle[p].get(key) for p in peers}, nd, False))

	w0 = max(len(r[0]) for r in rows) + 2
	out = []
	out.append("%-*s %12s %12s %10s" % (w0, "metric", "dnsgw", "dnsdist",
					    "dnsgw/dnsdist"))
	out.append("-" * (w0 + 12 + 12 + 15 + 3))
	for name, v, nd, hib in rows:
		a, b = v["dnsgw"], v["dnsdist"]
		if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
			ratio = "%.2f" % (a / b)
		else:
			ratio = "n/a"
		out.append("%-*s %12s %12s %10s" % (w0, name, fmt(a, nd), fmt(b, nd),
						    ratio))
	out.append("")
	out.append("Ratio > 1 is better for dnsgw on QPS; < 1 is better on "
		   "latency, losses and memory.")
	out.append("Best of %d round(s) per peer: highest QPS for the "
		   "cache-miss load, lowest p99 for the fixed-rate one; median "
		   "round for memory." % rounds)
	txt = "\n".join(out)
	print(txt)
	with open(os.path.join(d, "table.txt"), "w") as f:
		f.write(txt + "\n")
	return 0


def main(argv):
	if len(argv) < 2:
		print(__doc__, file=sys.stderr)
		return 2
	c, a = argv[1], argv[2:]
	if c == "ports":
		return cmd_ports(*a) or 0
	if c == "queries":
		return cmd_queries(*a) or 0
	if c == "wait-dot":
		return cmd_wait_dot(*a)
	if c == "rss":
		print(rss_kib(a[0]))
		return 0
	if c == "idle":
		return cmd_idle(*a)
	if c == "dnsperf":
		return cmd_dnsperf(*a)
	if c == "h2load":
		return cmd_h2load(*a)
	if c == "table":
		return cmd_table(*a)
	print(__doc__, file=sys.stderr)
	return 2


if __name__ == "__main__":
	sys.exit(main(sys.argv))
