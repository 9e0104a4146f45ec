#!/bin/bash
# bench/dot.sh - DNS-over-TLS, dnsgw side by side with dnsdist, same run.
#
#   bench/dot.sh                 the whole bench (about 3-4 minutes)
#   BENCH_PEERS=dnsdist bench/dot.sh   one peer only
#
# Not a test: no pass/fail. Prints QPS, latency percentiles and the
# dnsgw/dnsdist ratio for two loads, and resident memory per idle DoT
# connection. Raw output goes to bench/out/<timestamp>/ (git-ignored).
# Everything runs on 127.0.0.1; every process started here is stopped on
# exit. See bench/README.md for the method and its limits.
#
# Environment (defaults in brackets):
#   DNSGW              dnsgw binary [build/dnsgw]
#   BENCH_PEERS        peers to run ["dnsgw dnsdist"]
#   BENCH_ROUNDS       rounds, peers interleaved [2]
#   BENCH_SERVER_CPU   core of the server under test [0]
#   BENCH_CLIENT_CPU   core of dnsperf, the upstream and the probes [1]
#   BENCH_MISS_SECS    cache-miss load duration [15]
#   BENCH_MISS_CONNS   cache-miss load connections [20]
#   BENCH_MISS_OUTSTANDING  queries in flight, all connections [500]
#   BENCH_CONNS        many-connections load connections [500]
#   BENCH_CONNS_QPS    many-connections load total rate [2000]
#   BENCH_CONNS_SECS   many-connections load duration [15]
#   BENCH_IDLE_CONNS   idle connections for the memory figure [2000]
#   BENCH_QUERIES      unique names in the query file [500000]
set -euo pipefail

PEERS=${BENCH_PEERS:-dnsgw dnsdist}
ROUNDS=${BENCH_ROUNDS:-2}
MISS_SECS=${BENCH_MISS_SECS:-15}
MISS_CONNS=${BENCH_MISS_CONNS:-20}
MISS_OUT=${BENCH_MISS_OUTSTANDING:-500}
CONNS=${BENCH_CONNS:-500}
CONNS_QPS=${BENCH_CONNS_QPS:-2000}
CONNS_SECS=${BENCH_CONNS_SECS:-15}
IDLE_CONNS=${BENCH_IDLE_CONNS:-2000}
NQUERIES=${BENCH_QUERIES:-500000}
. "$(dirname "$0")/common.sh"

bench_start dot dnsperf taskset openssl cc
# Idle connections and 500-connection loads need descriptors on both sides.
bench_nofile $((IDLE_CONNS + 200))

# ------------------------------------------------------------------ fixtures
read -r UP_PORT DOT_PORT PLAIN_PORT <<<"$(tool ports 3)"
bench_cert
bench_responder
say "query file: $NQUERIES unique names"
tool queries "$TMP/queries.txt" "$NQUERIES"

# The upstream shares the load generator's core, the same for both peers.
taskset -c "$CCPU" "$TMP/responder" "$UP_PORT" &
PIDS+=($!)
UP_PID=$!

cat >"$TMP/dnsgw.yaml" <<EOF
# bench: idle connections must outlive the memory measurement, and every
# connection comes from 127.0.0.1.
limits:
  idle_timeout_ms: 60000
  max_conns_per_client: 5000
  max_inflight_per_conn: 100
EOF

cat >"$TMP/dnsdist.conf" <<EOF
-- bench: the equivalent of dnsgw --threads 1 with the same limits.
setSecurityPollSuffix("")           -- no security polling (no DNS traffic out)
setLocal("127.0.0.1:$PLAIN_PORT")   -- instead of the default 127.0.0.1:53
-- maxInFlight: pipelined queries answered out of order, like dnsgw's 100.
addTLSLocal("127.0.0.1:$DOT_PORT", "$CERT", "$KEY",
	{provider="openssl", maxInFlight=100})
-- DoT queries go to the backend over TCP (dnsdist keeps the protocol);
-- maxInFlight lets it pipeline them on its backend connections.
newServer({address="127.0.0.1:$UP_PORT", maxInFlight=100})
setACL({"127.0.0.0/8"})
setMaxTCPClientThreads(1)           -- one TCP/DoT worker
setTCPRecvTimeout(60)               -- idle connections kept 60 s
setTCPSendTimeout(60)
setMaxTCPConnectionsPerClient(0)    -- no per-client cap
setMaxTCPQueuedConnections(20000)
-- No packet cache (none is configured): every query goes upstream.
-- No console, no web server, no carbon: nothing listens or sends elsewhere.
EOF
cp "$TMP/dnsgw.yaml" "$TMP/dnsdist.conf" "$OUT/"

SERVER_PID=
start_server() {
	local peer=$1 log=$2
	case $peer in
	dnsgw)
		taskset -c "$SCPU" "$DNSGW" -c "$TMP/dnsgw.yaml" --threads 1 \
			--listen "dot://127.0.0.1:$DOT_PORT" \
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

perf() { # LABEL FILE dnsperf-args...
	local label=$1 file=$2
	shift 2
	client taskset -c "$CCPU" dnsperf -m dot -s 127.0.0.1 -p "$DOT_PORT" \
		-d "$TMP/queries.txt" -v "$@" >"$file" 2>&1 ||
		say "warning: dnsperf exited non-zero for $label"
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
{
	echo "{\"rounds\": $ROUNDS, \"idle_conns\": $IDLE_CONNS,"
	echo " \"miss_desc\": \"cache-miss $MISS_CONNS conns\","
	echo " \"conns_desc\": \"$CONNS conns @ $CONNS_QPS qps\","
	echo " \"dnsdist\": \"$(dnsdist --version 2>/dev/null | head -1)\","
	echo " \"dnsperf\": \"$(dnsperf -h 2>&1 | sed -n 's/^Version //p')\","
	echo " \"loadavg_start\": \"$LOAD0\"}"
} >"$OUT/meta.json"

say "ports: upstream $UP_PORT, DoT $DOT_PORT; server on CPU $SCPU," \
	"dnsperf + upstream on CPU $CCPU; load average $(cut -d' ' -f1-3 /proc/loadavg)"
say "raw output: $OUT"
if awk '{ exit !($1 > 1.0) }' /proc/loadavg; then
	say "warning: load average $LOAD0: other work on this machine will" \
		"disturb the figures (see $OUT/top.txt)"
	top -b -n1 | head -20 >"$OUT/top.txt" 2>/dev/null || true
fi

for r in $(seq "$ROUNDS"); do
	for peer in $PEERS; do
		say "round $r/$ROUNDS: $peer"
		start_server "$peer" "$OUT/$peer.server.r$r.log"
		# Warm-up: handshakes, upstream sockets, allocator arenas.
		perf warmup "$OUT/$peer.warmup.r$r.txt" -l 2 -c "$MISS_CONNS" -q 100
		perf miss "$OUT/$peer.miss.r$r.txt" -l "$MISS_SECS" \
			-c "$MISS_CONNS" -q "$MISS_OUT"
		tool dnsperf "$OUT/$peer.miss.r$r.txt" \
			"$OUT/$peer.miss.r$r.json" "  $peer cache-miss"
		perf conns "$OUT/$peer.conns.r$r.txt" -l "$CONNS_SECS" \
			-c "$CONNS" -Q "$CONNS_QPS" -q "$MISS_OUT"
		tool dnsperf "$OUT/$peer.conns.r$r.txt" \
			"$OUT/$peer.conns.r$r.json" "  $peer $CONNS conns"
		stop_server
		# A fresh process for memory: after a load the allocator keeps
		# freed memory, which would hide what a connection costs.
		start_server "$peer" "$OUT/$peer.server-idle.r$r.log"
		client taskset -c "$CCPU" "$PY" "$HERE/benchtool.py" idle \
			"$DOT_PORT" "$CERT" "$SERVER_PID" "$IDLE_CONNS" \
			"$OUT/$peer.idle.r$r.json" "  $peer" ||
			say "warning: idle probe failed for $peer"
		stop_server
	done
done

kill -0 "$UP_PID" 2>/dev/null || say "warning: the upstream responder died"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT/loadavg_end"
echo
echo "DoT, dnsgw vs dnsdist ($(dnsdist --version 2>/dev/null | head -1 | cut -d' ' -f1-2)), $(nproc) CPUs, load average $LOAD0 at start, $(cut -d' ' -f1-3 /proc/loadavg) at end"
tool table "$OUT"
