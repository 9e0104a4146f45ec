#!/bin/bash
# bench/doh.sh - DNS-over-HTTPS (HTTP/2), dnsgw side by side with dnsdist,
# same run, same pinning as bench/dot.sh (read bench/README.md).
#
#   bench/doh.sh                      the whole bench (about 2-3 minutes)
#   BENCH_PEERS=dnsgw bench/doh.sh    one peer only
#
# Not a test: no pass/fail. h2load (nghttp2) is the load generator, not
# dnsperf: dnsperf 2.10's DoH module loses every answer whose DATA frame
# follows another complete answer in the same TLS record (its data-chunk
# callback returns NGHTTP2_ERR_PAUSE without keeping the chunk, which
# nghttp2 counts as consumed), and dnsdist's h2o writes many answers per
# record: dnsperf then shows dnsdist at a few qps with most queries "lost"
# (bench/README.md, "doh.sh"). h2load POSTs application/dns-message (or
# GETs ?dns=) and logs every request's status and duration; percentiles
# come from that log. Then resident memory per idle DoH connection (TLS +
# HTTP/2 preface and SETTINGS exchanged). Raw output goes to
# bench/out/<timestamp>-doh/. Everything runs on 127.0.0.1.
#
# Environment (defaults in brackets):
#   DNSGW              dnsgw binary [build/dnsgw]
#   BENCH_PEERS        peers to run ["dnsgw dnsdist"]
#   BENCH_ROUNDS       rounds, peers interleaved [2]
#   BENCH_SERVER_CPU   core of the server under test [0]
#   BENCH_CLIENT_CPU   core of h2load, the upstream and the probes [1]
#   BENCH_DOH_METHOD   POST (one fixed query body) or GET (unique names) [POST]
#   BENCH_MISS_SECS    cache-miss load duration [15]
#   BENCH_MISS_CONNS   cache-miss load connections [20]
#   BENCH_MISS_STREAMS concurrent streams per connection [25]
#   BENCH_CONNS        many-connections load connections [200]
#   BENCH_CONNS_QPS    many-connections load total rate [2000]
#   BENCH_CONNS_SECS   many-connections load duration [15]
#   BENCH_IDLE_CONNS   idle connections for the memory figure [1000]
#   BENCH_QUERIES      unique names for GET [100000]
set -euo pipefail

PEERS=${BENCH_PEERS:-dnsgw dnsdist}
ROUNDS=${BENCH_ROUNDS:-2}
METHOD=${BENCH_DOH_METHOD:-POST}
MISS_SECS=${BENCH_MISS_SECS:-15}
MISS_CONNS=${BENCH_MISS_CONNS:-20}
MISS_STREAMS=${BENCH_MISS_STREAMS:-25}
CONNS=${BENCH_CONNS:-200}
CONNS_QPS=${BENCH_CONNS_QPS:-2000}
CONNS_SECS=${BENCH_CONNS_SECS:-15}
IDLE_CONNS=${BENCH_IDLE_CONNS:-1000}
NQUERIES=${BENCH_QUERIES:-100000}
. "$(dirname "$0")/common.sh"

# h2load is in nghttp2-client
bench_start doh h2load curl taskset openssl cc
bench_nofile $((IDLE_CONNS + 200))

# ------------------------------------------------------------------ fixtures
read -r UP_PORT DOH_PORT PLAIN_PORT <<<"$(tool ports 3)"
bench_cert
bench_responder
# POST: one query (ID 0, RFC 8484 section 4.1) as the body of every request;
# neither server caches, so every request is forwarded all the same. GET:
# $NQUERIES URIs with unique names, cycled through by each connection.
"$PY" - "$TMP" "$DOH_PORT" "$NQUERIES" <<'EOF'
import base64, random, struct, sys
tmp, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def query(name):
	q = struct.pack(">HHHHHH", 0, 0x0100, 1, 0, 0, 0)
	for label in name.split("."):
		q += bytes([len(label)]) + label.encode()
	return q + b"\0" + struct.pack(">HH", 1, 1)
open(tmp + "/query.bin", "wb").write(query("www.bench.test"))
r = random.Random()
with open(tmp + "/uris.txt", "w") as f:
	for _ in range(n):
		b = base64.urlsafe_b64encode(query("r%010x.bench.test" % r.getrandbits(40)))
		f.write("https://127.0.0.1:%d/dns-query?dns=%s\n" % (port, b.decode().rstrip("=")))
EOF

taskset -c "$CCPU" "$TMP/responder" "$UP_PORT" &
PIDS+=($!)
UP_PID=$!

cat >"$TMP/dnsgw.yaml" <<EOF
# bench: idle connections must outlive the memory measurement, and every
# connection comes from 127.0.0.1. No response cache (dnsdist has none
# configured; every POST carries the same query).
cache:
  size_bytes: 0
limits:
  doh_idle_timeout_ms: 60000
  max_conns_per_client: 5000
  max_inflight_per_conn: 100
EOF

cat >"$TMP/dnsdist.conf" <<EOF
-- bench: the equivalent of dnsgw --threads 1 with the same limits.
setSecurityPollSuffix("")           -- no security polling (no DNS traffic out)
setLocal("127.0.0.1:$PLAIN_PORT")   -- instead of the default 127.0.0.1:53
-- DoH in dnsdist 1.7 is h2o + OpenSSL (no provider choice), ALPN h2 and
-- http/1.1, one h2o thread per addDOHLocal (no thread-count option); the
-- same certificate files as dnsgw; queries go to the backend over UDP,
-- like dnsgw's udp:// upstream.
addDOHLocal("127.0.0.1:$DOH_PORT", "$CERT", "$KEY", "/dns-query",
	{idleTimeout=60, sendCacheControlHeaders=true})
newServer({address="127.0.0.1:$UP_PORT"})
setACL({"127.0.0.0/8"})
setMaxTCPConnectionsPerClient(0)    -- no per-client cap
-- No packet cache (none is configured): every query goes upstream.
-- No console, no web server, no carbon: nothing listens or sends elsewhere.
EOF
cp "$TMP/dnsgw.yaml" "$TMP/dnsdist.conf" "$OUT/"

# Idle DoH connections: TLS with ALPN h2, client preface + SETTINGS, the
# server's SETTINGS read; then held while the server's RSS is sampled.
cat >"$TMP/idle.py" <<'EOF'
import json, os, resource, socket, ssl, sys, time
port, pid, n, out, label = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
def rss():
    for l in open('/proc/%d/status' % pid):
        if l.startswith('VmRSS:'):
            return int(l.split()[1])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(['h2'])
def conn():
    s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', port), timeout=5))
    s.sendall(b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' + b'\x00\x00\x00\x04\x00\x00\x00\x00\x00')
    s.recv(4096)
    return s
# Throwaway handshakes first: per-process caches that distinct clients fill
# (wolfSSL's fixed-point ECC cache, if built in, keeps up to 15 peers' key
# shares, ~12 MiB) belong in the baseline, not in the per-connection cost.
for _ in range(32):
    conn().close()
time.sleep(1.0)
before = rss()
conns = []
for _ in range(n):
    try:
        conns.append(conn())
    except OSError:
        pass
time.sleep(2.0)
after = rss()
alive = 0
for s in conns:
    try:
        s.setblocking(False)
        d = s.recv(1)
        alive += 0 if d == b'' else 1
    except ssl.SSLWantReadError:
        alive += 1
    except OSError:
        pass
r = {'rss_before_kib': before, 'rss_after_kib': after, 'alive': alive,
     'kib_per_conn': (after - before) / max(1, len(conns))}
json.dump(r, open(out, 'w'))
print('%s: %d idle DoH conns, %.2f KiB each' % (label, alive, r['kib_per_conn']))
EOF

SERVER_PID=
start_server() {
	local peer=$1 log=$2
	case $peer in
	dnsgw)
		taskset -c "$SCPU" "$DNSGW" -c "$TMP/dnsgw.yaml" --threads 1 \
			--listen "doh://127.0.0.1:$DOH_PORT" \
			--upstream "udp://127.0.0.1:$UP_PORT" \
			--cert "$CERT" --key "$KEY" --log-level warn \
			>"$log" 2>&1 &
		;;
	dnsdist)
		taskset -c "$SCPU" dnsdist --supervised --disable-syslog \
			-C "$TMP/dnsdist.conf" >"$log" 2>&1 &
		;;
	esac
	SERVER_PID=$!
	PIDS+=("$SERVER_PID")
	for _ in $(seq 150); do
		if curl -sk --http2 -o /dev/null --max-time 1 \
			"https://127.0.0.1:$DOH_PORT/dns-query?dns=AAABAAABAAAAAAAAB2V4YW1wbGUDY29tAAABAAE"; then
			return 0
		fi
		sleep 0.1
	done
	cat "$log" >&2
	die "$peer did not start"
}

# h2load's -d file is the POST body; GET takes the URIs from -i instead.
if [ "$METHOD" = GET ]; then
	REQ=(-i "$TMP/uris.txt")
else
	REQ=(-d "$TMP/query.bin" "https://127.0.0.1:$DOH_PORT/dns-query")
fi
HDRS=(-H "content-type: application/dns-message" -H "accept: application/dns-message")

perf() { # LABEL OUT-BASENAME h2load-args...
	local label=$1 base=$2
	shift 2
	client taskset -c "$CCPU" h2load -t 1 "${HDRS[@]}" \
		--log-file="$base.log" "$@" "${REQ[@]}" >"$base.txt" 2>&1 ||
		say "warning: h2load exited non-zero for $label"
	grep -v '^progress' "$base.txt" >"$base.txt.tmp" || true
	mv "$base.txt.tmp" "$base.txt"
}

# Fixed rate: h2load 1.52 has no request-rate option, so a timing script
# sends each connection's requests every 1000*CONNS/QPS ms (the connections
# start as their handshakes finish, so they are not all in phase).
PERIOD_MS=$("$PY" -c "print(1000.0 * $CONNS / $CONNS_QPS)")
PER_CONN=$("$PY" -c "print(int($CONNS_SECS * $CONNS_QPS / $CONNS))")
"$PY" -c "
for i in range($PER_CONN):
	print('%.3f\thttps://127.0.0.1:$DOH_PORT/dns-query' % (i * $PERIOD_MS))
" >"$TMP/timing.txt"

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
{
	echo "{\"rounds\": $ROUNDS, \"idle_conns\": $IDLE_CONNS,"
	echo " \"miss_desc\": \"DoH $METHOD $MISS_CONNS conns x $MISS_STREAMS streams\","
	echo " \"conns_desc\": \"DoH $METHOD $CONNS conns @ $CONNS_QPS qps\","
	echo " \"dnsdist\": \"$(dnsdist --version 2>/dev/null | head -1)\","
	echo " \"h2load\": \"$(h2load --version 2>/dev/null | head -1)\","
	echo " \"idle_kind\": \"DoH\","
	echo " \"loadavg_start\": \"$LOAD0\"}"
} >"$OUT/meta.json"

say "ports: upstream $UP_PORT, DoH $DOH_PORT; server on CPU $SCPU," \
	"h2load + upstream on CPU $CCPU; load average $LOAD0"
say "raw output: $OUT"

for r in $(seq "$ROUNDS"); do
	for peer in $PEERS; do
		say "round $r/$ROUNDS: $peer"
		start_server "$peer" "$OUT/$peer.server.r$r.log"
		perf warmup "$OUT/$peer.warmup.r$r" -D 2 -c "$MISS_CONNS" -m 5
		perf miss "$OUT/$peer.miss.r$r" -D "$MISS_SECS" \
			-c "$MISS_CONNS" -m "$MISS_STREAMS"
		tool h2load "$OUT/$peer.miss.r$r.txt" "$OUT/$peer.miss.r$r.log" \
			"$OUT/$peer.miss.r$r.json" "  $peer cache-miss"
		if [ "$METHOD" = GET ]; then
			say "  (GET: the fixed-rate load is POST only; skipped)"
		else
			REQ=(-d "$TMP/query.bin")
			perf conns "$OUT/$peer.conns.r$r" -c "$CONNS" -m 1 \
				-n "$PER_CONN" --timing-script-file="$TMP/timing.txt"
			REQ=(-d "$TMP/query.bin" "https://127.0.0.1:$DOH_PORT/dns-query")
			tool h2load "$OUT/$peer.conns.r$r.txt" \
				"$OUT/$peer.conns.r$r.log" \
				"$OUT/$peer.conns.r$r.json" "  $peer $CONNS conns"
		fi
		stop_server
		start_server "$peer" "$OUT/$peer.server-idle.r$r.log"
		client taskset -c "$CCPU" "$PY" "$TMP/idle.py" "$DOH_PORT" \
			"$SERVER_PID" "$IDLE_CONNS" "$OUT/$peer.idle.r$r.json" \
			"  $peer" || say "warning: idle probe failed for $peer"
		stop_server
	done
done

kill -0 "$UP_PID" 2>/dev/null || say "warning: the upstream responder died"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT/loadavg_end"
echo
echo "DoH (HTTP/2 $METHOD, h2load), dnsgw vs dnsdist ($(dnsdist --version 2>/dev/null | head -1 | cut -d' ' -f1-2)), $(nproc) CPUs, load average $LOAD0 at start, $(cut -d' ' -f1-3 /proc/loadavg) at end"
tool table "$OUT"
