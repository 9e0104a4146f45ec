#!/bin/bash
# doq.sh - DoQ load: dnsgw's DoQ front-end vs knotd 3.4's DoQ (trixie chroot,
# authoritative zone) vs dnsgw's own DoT, with tests/tools/doq_client as the
# load generator (dnsperf has no DoQ mode).
#
#   bench/doq.sh [BUILD_DIR]      (default build/; needs root for the chroot)
#
# Env: DOQ_CONNS (50), DOQ_STREAMS (10 per connection), DOQ_SECONDS (10),
#      DOQ_THREADS (dnsgw workers, 1). Prints one JSON summary line per run
# (QPS, p50/p90/p99 latency, handshakes/s) and the memory per idle
# connection of dnsgw's DoQ. Everything runs on 127.0.0.1.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BUILD=${1:-$ROOT/build}
CLIENT=$BUILD/tests/tools/doq_client
GW=$BUILD/dnsgw
CONNS=${DOQ_CONNS:-50}
STREAMS=${DOQ_STREAMS:-10}
SECS=${DOQ_SECONDS:-10}
THREADS=${DOQ_THREADS:-1}
CHROOT=$ROOT/tests/integration/trixie-chroot.sh
TMP=$(mktemp -d /tmp/dnsgw-doqbench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT
say() { printf 'doq-bench: %s\n' "$*" >&2; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

[ -x "$CLIENT" ] && [ -x "$GW" ] || { say "build first (cmake --build $BUILD)"; exit 1; }
cc -O2 -o "$TMP/responder" "$HERE/responder.c"
UP=$(port); DOQ=$(port); DOT=$(port); KNOT=$(port)
"$TMP/responder" "$UP" & PIDS+=($!)
"$GW" --listen "doq://127.0.0.1:$DOQ" --listen "dot://127.0.0.1:$DOT" \
	--upstream "udp://127.0.0.1:$UP" --threads "$THREADS" --log-level warn \
	>"$TMP/gw.out" 2>&1 & GWPID=$!; PIDS+=($GWPID)
sleep 1

run() { # LABEL PORT CASE [args]
	local label=$1 p=$2 c=$3; shift 3
	printf '%-28s ' "$label"
	"$CLIENT" -s 127.0.0.1 -p "$p" -c "$c" -C "$CONNS" -S "$STREAMS" \
		-d "$SECS" -q www.example.test -Q "$@" | tail -1
}

run "dnsgw DoQ queries" "$DOQ" bench
run "dnsgw DoQ handshakes" "$DOQ" handshakes
# memory per idle connection: RSS before/after 500 idle connections
rss() { awk '/VmRSS/ {print $2}' "/proc/$GWPID/status"; }
r0=$(rss)
"$CLIENT" -s 127.0.0.1 -p "$DOQ" -c dangling -C 500 -t 4 -Q >/dev/null &
IDLE=$!
sleep 3
r1=$(rss)
wait "$IDLE" || true
printf '%-28s {"idle_conns":500,"rss_kib_before":%s,"rss_kib_with":%s,"kib_per_conn":%.1f}\n' \
	"dnsgw DoQ idle memory" "$r0" "$r1" "$(python3 -c "print(($r1 - $r0) / 500)")"

if command -v dnsperf >/dev/null; then
	printf 'www.example.test A\n' >"$TMP/q.txt"
	printf '%-28s ' "dnsgw DoT (dnsperf)"
	dnsperf -m dot -s 127.0.0.1 -p "$DOT" -d "$TMP/q.txt" -c "$CONNS" \
		-q $((CONNS * STREAMS)) -l "$SECS" 2>&1 |
		awk '/Queries per second/ {q=$4} /Average Latency/ {l=$4} END {printf "{\"qps\":%s,\"avg_latency_s\":%s}\n", q, l}'
fi

if [ "$(id -u)" = 0 ] && "$CHROOT" setup 2>/dev/null; then
	D=$("$CHROOT" path)
	mkdir -p "$D/tmp/knotbench"
	cat >"$D/tmp/knotbench/example.test.zone" <<ZONE
\$ORIGIN example.test.
\$TTL 60
@ SOA ns hostmaster 1 3600 600 86400 60
@ NS ns
ns A 192.0.2.53
www A 192.0.2.1
ZONE
	cat >"$D/tmp/knotbench/knot.conf" <<CONF
server:
  listen-quic: 127.0.0.1@$KNOT
  rundir: /tmp/knotbench
  background-workers: 1
  udp-workers: $THREADS
database:
  storage: /tmp/knotbench
zone:
  - domain: example.test
    storage: /tmp/knotbench
    file: example.test.zone
CONF
	"$CHROOT" run knotd -c /tmp/knotbench/knot.conf >"$TMP/knot.out" 2>&1 &
	PIDS+=($!)
	sleep 2
	run "knotd 3.4 DoQ queries" "$KNOT" bench
	run "knotd 3.4 DoQ handshakes" "$KNOT" handshakes
else
	say "no trixie chroot: knotd comparison skipped"
fi
