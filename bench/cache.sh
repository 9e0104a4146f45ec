#!/bin/bash
# bench/cache.sh - cache-hit load: dnsgw with its response cache on, side by
# side with dnsdist with its packet cache on, same run, same pinning.
#
#   bench/cache.sh                    the whole bench (about 2-3 minutes)
#   BENCH_PEERS=dnsgw bench/cache.sh  one peer only
#
# Not a test: no pass/fail. A small set of names is asked over and over, so
# after the warm-up every query is answered from the cache: this measures the
# front-end plus the cache, not the upstream. Loads: DoT and UDP. Prints QPS,
# latency percentiles and the dnsgw/dnsdist ratio. Same method as dot.sh
# (see bench/README.md): server alone on one core, dnsperf and the upstream
# on the other, rounds interleaved. Raw output in bench/out/<timestamp>-cache/.
#
# Environment (defaults in brackets):
#   DNSGW              dnsgw binary [build/dnsgw]
#   BENCH_PEERS        peers to run ["dnsgw dnsdist"]
#   BENCH_ROUNDS       rounds, peers interleaved [2]
#   BENCH_SERVER_CPU   core of the server under test [0]
#   BENCH_CLIENT_CPU   core of dnsperf and the upstream [1]
#   BENCH_HIT_SECS     duration of each load [15]
#   BENCH_HIT_CONNS    DoT connections / UDP sockets of dnsperf [20]
#   BENCH_HIT_OUTSTANDING  queries in flight, all connections [500]
#   BENCH_HIT_NAMES    distinct names asked [100]
set -euo pipefail

PEERS=${BENCH_PEERS:-dnsgw dnsdist}
ROUNDS=${BENCH_ROUNDS:-2}
SECS=${BENCH_HIT_SECS:-15}
CONNS=${BENCH_HIT_CONNS:-20}
OUTST=${BENCH_HIT_OUTSTANDING:-500}
NAMES=${BENCH_HIT_NAMES:-100}
. "$(dirname "$0")/common.sh"

bench_start cache dnsperf taskset openssl cc

# ------------------------------------------------------------------ fixtures
read -r UP_PORT DOT_PORT PLAIN_PORT <<<"$(tool ports 3)"
bench_cert
bench_responder
# A few names, asked in turn: the responder answers each with TTL 300, far
# longer than a run, so after the warm-up nothing goes upstream.
for i in $(seq "$NAMES"); do
	echo "h$i.bench.test A"
done >"$TMP/queries.txt"

taskset -c "$CCPU" "$TMP/responder" "$UP_PORT" &
PIDS+=($!)
UP_PID=$!

cat >"$TMP/dnsgw.yaml" <<EOF
# bench: the response cache is on by default (32 MiB); said here to be plain.
cache:
  size_bytes: 33554432
limits:
  idle_timeout_ms: 60000
  max_conns_per_client: 5000
  max_inflight_per_conn: 100
EOF

cat >"$TMP/dnsdist.conf" <<EOF
-- bench: dnsgw --threads 1 with its cache, as dnsdist sees it.
setSecurityPollSuffix("")           -- no security polling (no DNS traffic out)
setLocal("127.0.0.1:$PLAIN_PORT")   -- UDP (and TCP) listener, one thread
addTLSLocal("127.0.0.1:$DOT_PORT", "$CERT", "$KEY",
	{provider="openssl", maxInFlight=100})
newServer({address="127.0.0.1:$UP_PORT", maxInFlight=100})
setACL({"127.0.0.0/8"})
setMaxTCPClientThreads(1)           -- one TCP/DoT worker
setTCPRecvTimeout(60)
setTCPSendTimeout(60)
setMaxTCPConnectionsPerClient(0)
-- The packet cache: 100000 entries, TTLs as the answers say.
pc = newPacketCache(100000, {maxTTL=86400, minTTL=0})
getPool(""):setCache(pc)
EOF
cp "$TMP/dnsgw.yaml" "$TMP/dnsdist.conf" "$OUT/"

SERVER_PID=
start_server() {
	local peer=$1 log=$2
	case $peer in
	dnsgw)
		taskset -c "$SCPU" "$DNSGW" -c "$TMP/dnsgw.yaml" --threads 1 \
			--listen "dot://127.0.0.1:$DOT_PORT" \
			--listen "udp://127.0.0.1:$PLAIN_PORT" \
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
	if ! tool wait-dot "$DOT_PORT" "$CERT" 15; then
		cat "$log" >&2
		die "$peer did not start"
	fi
}

perf() { # LABEL FILE MODE PORT dnsperf-args...
	local label=$1 file=$2 mode=$3 port=$4
	shift 4
	client taskset -c "$CCPU" dnsperf -m "$mode" -s 127.0.0.1 -p "$port" \
		-d "$TMP/queries.txt" -v "$@" >"$file" 2>&1 ||
		say "warning: dnsperf exited non-zero for $label"
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
say "ports: upstream $UP_PORT, DoT $DOT_PORT, UDP $PLAIN_PORT; server on" \
	"CPU $SCPU, dnsperf + upstream on CPU $CCPU; load average $LOAD0"
say "raw output: $OUT"

for r in $(seq "$ROUNDS"); do
	for peer in $PEERS; do
		say "round $r/$ROUNDS: $peer"
		start_server "$peer" "$OUT/$peer.server.r$r.log"
		# Warm-up fills the cache of both front-ends' transport classes.
		perf warmup "$OUT/$peer.warmup-dot.r$r.txt" dot "$DOT_PORT" \
			-l 2 -c "$CONNS" -q 100
		perf warmup "$OUT/$peer.warmup-udp.r$r.txt" udp "$PLAIN_PORT" \
			-l 2 -c "$CONNS" -q 100
		perf hit-dot "$OUT/$peer.hitdot.r$r.txt" dot "$DOT_PORT" \
			-l "$SECS" -c "$CONNS" -q "$OUTST"
		tool dnsperf "$OUT/$peer.hitdot.r$r.txt" \
			"$OUT/$peer.hitdot.r$r.json" "  $peer DoT cache-hit"
		perf hit-udp "$OUT/$peer.hitudp.r$r.txt" udp "$PLAIN_PORT" \
			-l "$SECS" -c "$CONNS" -q "$OUTST"
		tool dnsperf "$OUT/$peer.hitudp.r$r.txt" \
			"$OUT/$peer.hitudp.r$r.json" "  $peer UDP cache-hit"
		stop_server
	done
done

kill -0 "$UP_PID" 2>/dev/null || say "warning: the upstream responder died"
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
echo
echo "cache-hit load ($NAMES names), dnsgw vs dnsdist" \
	"($(dnsdist --version 2>/dev/null | head -1 | cut -d' ' -f1-2)) with packet cache," \
	"$(nproc) CPUs, load average $LOAD0 at start, $LOAD1 at end"
"$PY" - "$OUT" "$PEERS" <<'EOF' | tee "$OUT/table.txt"
import glob, json, os, sys
d, peers = sys.argv[1], sys.argv[2].split()
def avg(peer, load, key):
	v = []
	for f in sorted(glob.glob(os.path.join(d, "%s.%s.r*.json" % (peer, load)))):
		x = json.load(open(f)).get(key)
		if x is not None:
			v.append(x)
	return sum(v) / len(v) if v else None
rows = []
for load, name in (("hitdot", "DoT"), ("hitudp", "UDP")):
	for key, what in (("qps", "QPS"), ("p50_ms", "p50 latency (ms)"),
			  ("p99_ms", "p99 latency (ms)"), ("lost", "lost queries")):
		rows.append(("%s cache-hit %s" % (name, what),
			     [avg(p, load, key) for p in peers]))
w = max(len(r[0]) for r in rows) + 2
hdr = "%-*s" % (w, "") + "".join("%14s" % p for p in peers)
if len(peers) == 2:
	hdr += "%14s" % ("%s/%s" % tuple(peers))
print(hdr)
for label, vals in rows:
	line = "%-*s" % (w, label)
	for v in vals:
		line += "%14s" % ("-" if v is None else
				  ("%.0f" % v if v >= 100 else "%.3f" % v))
	if len(vals) == 2 and vals[0] is not None and vals[1]:
		line += "%14.2f" % (vals[0] / vals[1])
	print(line)
EOF
