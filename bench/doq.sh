#!/bin/bash
# bench/doq.sh - DNS over QUIC: dnsgw's DoQ front-end vs knotd 3.4's DoQ
# (Debian trixie chroot, an authoritative zone) vs dnsgw's own DoT, same
# run, same pinning as bench/dot.sh (read bench/README.md, "doq.sh").
#
#   bench/doq.sh                 (about 2 minutes; root for the chroot)
#   BENCH_PEERS="dnsgw-doq dnsgw-dot" bench/doq.sh   without knotd
#
# Not a test: no pass/fail. dnsperf has no DoQ mode, so the load generator
# is tests/tools/doq_client (ngtcp2 + wolfSSL): "bench" keeps S queries in
# flight on each of C connections (a connection whose server grants no more
# streams is replaced: knotd allows 1024 per connection); "handshakes" keeps C connections
# cycling (handshake, one query, close); "idle" completes N handshakes and
# holds them with nothing sent. DoT is loaded by dnsperf -m dot the same
# way (C connections, C*S in flight; one query per connection for the
# handshake rate). Every query is answered: knotd from its zone, dnsgw by
# forwarding over UDP to bench/responder.c (one upstream round trip more
# than knotd does). Raw output in bench/out/<timestamp>-doq/.
#
# Environment (defaults in brackets):
#   BUILD              build directory with dnsgw and tests/tools/doq_client [build]
#   DNSGW              dnsgw binary [$BUILD/dnsgw]
#   BENCH_PEERS        ["dnsgw-doq knotd-doq dnsgw-dot"]
#   BENCH_SERVER_CPU   core of the server under test [0]
#   BENCH_CLIENT_CPU   core of the load generator, upstream, probes [1]
#   DOQ_CONNS          connections of the query load [50]
#   DOQ_STREAMS        queries in flight per connection [8]
#   DOQ_SECONDS        duration of each load [10]
#   DOQ_HS_CONNS       connections cycling in the handshake load [50]
#   DOQ_IDLE_CONNS     idle connections for the memory figure [500]
set -euo pipefail

# dnsgw from $BUILD unless DNSGW names it
[ -n "${DNSGW:-}" ] || DNSGW=${BUILD:-$(dirname "$0")/../build}/dnsgw
. "$(dirname "$0")/common.sh"
BUILD=${BUILD:-$ROOT/build}
CLIENT=$BUILD/tests/tools/doq_client
PEERS=${BENCH_PEERS:-dnsgw-doq knotd-doq dnsgw-dot}
CONNS=${DOQ_CONNS:-50}
STREAMS=${DOQ_STREAMS:-8}
SECS=${DOQ_SECONDS:-10}
HS_CONNS=${DOQ_HS_CONNS:-50}
IDLE=${DOQ_IDLE_CONNS:-500}
CHROOT=$ROOT/tests/integration/trixie-chroot.sh
NAME=www.example.test

bench_start doq taskset openssl cc
[ -x "$CLIENT" ] || die "$CLIENT not built (cmake --build $BUILD), or set BUILD"
case " $PEERS " in *" dnsgw-dot "*)
	command -v dnsperf >/dev/null || die "dnsperf missing (./deps.sh --bench)";;
esac
case " $PEERS " in *" knotd-doq "*)
	if [ "$(id -u)" != 0 ] || ! "$CHROOT" setup >/dev/null 2>&1; then
		say "no trixie chroot (needs root and debootstrap): knotd skipped"
		PEERS=${PEERS//knotd-doq/}
	fi;;
esac
bench_nofile $((IDLE + 200))
bench_cleanup_extra() { [ -z "${KDIR:-}" ] || rm -rf "$KDIR"; }

read -r UP DOQ DOT KNOT <<<"$(tool ports 4)"
bench_cert
bench_responder
taskset -c "$CCPU" "$TMP/responder" "$UP" &
PIDS+=($!)

# Every connection comes from 127.0.0.1: the per-client cap (64 by default,
# QUIC and TCP together) would refuse most of the load. Retry off, as
# knotd does not send one either (dnsgw's default "auto" would Retry the
# idle load's burst of handshakes).
# No response cache: every query is forwarded (knotd answers from its zone,
# dnsgw from the responder; the load asks one name over and over).
cat >"$TMP/dnsgw.yaml" <<EOF
cache:
  size_bytes: 0
limits:
  idle_timeout_ms: 60000
  max_conns_per_client: 5000
doq:
  retry: never
  idle_timeout_ms: 60000
  max_streams: 64
EOF
cp "$TMP/dnsgw.yaml" "$OUT/"

SPID=
start_dnsgw() { # LOG
	taskset -c "$SCPU" "$DNSGW" -c "$TMP/dnsgw.yaml" --threads 1 \
		--listen "doq://127.0.0.1:$DOQ" --listen "dot://127.0.0.1:$DOT" \
		--upstream "udp://127.0.0.1:$UP" --cert "$TMP/cert.pem" \
		--key "$TMP/key.pem" --log-level warn >"$1" 2>&1 &
	SPID=$!
	PIDS+=("$SPID")
	tool wait-dot "$DOT" "$TMP/cert.pem" 15 || { cat "$1" >&2; die "dnsgw did not start"; }
}

KDIR=
start_knotd() { # LOG
	local d
	d=$("$CHROOT" path)
	KDIR=$(mktemp -d "$d/tmp/knotbench.XXXXXX")
	local k=/tmp/${KDIR##*/}
	cat >"$KDIR/example.test.zone" <<ZONE
\$ORIGIN example.test.
\$TTL 60
@ SOA ns hostmaster 1 3600 600 86400 60
@ NS ns
ns A 192.0.2.53
www A 192.0.2.1
ZONE
	# One UDP worker (it serves QUIC too) like dnsgw --threads 1; idle
	# connections kept 60 s like dnsgw's doq.idle_timeout_ms.
	cat >"$KDIR/knot.conf" <<CONF
server:
  listen-quic: 127.0.0.1@$KNOT
  rundir: $k
  udp-workers: 1
  tcp-workers: 1
  background-workers: 1
  quic-idle-close-timeout: 60
  quic-max-clients: 10000
database:
  storage: $k
zone:
  - domain: example.test
    storage: $k
    file: example.test.zone
CONF
	cp "$KDIR/knot.conf" "$OUT/knot.conf"
	taskset -c "$SCPU" "$CHROOT" run knotd -c "$k/knot.conf" >"$1" 2>&1 &
	SPID=$!
	PIDS+=("$SPID")
	for _ in $(seq 100); do
		"$CLIENT" -s 127.0.0.1 -p "$KNOT" -q "$NAME" -t 1 2>/dev/null |
			grep -q '"answers":1' && return 0
		sleep 0.2
	done
	cat "$1" >&2
	die "knotd did not answer over DoQ"
}

stop_server() {
	local p keep=()
	stop_pid "$SPID"
	for p in "${PIDS[@]}"; do [ "$p" = "$SPID" ] || keep+=("$p"); done
	PIDS=("${keep[@]}")
	SPID=
	[ -n "$KDIR" ] && rm -rf "$KDIR"
	KDIR=
}

rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

doq_load() { # PORT CASE OUTJSON ARGS...
	local p=$1 c=$2 out=$3
	shift 3
	taskset -c "$CCPU" "$CLIENT" -s 127.0.0.1 -p "$p" -c "$c" -q "$NAME" \
		-d "$SECS" -Q "$@" | tail -1 >"$out"
	cat "$out"
}

# RSS per idle connection on a fresh server (after a load the allocator
# keeps freed memory): 32 throwaway connections with a query first so
# lazily built state is in the baseline, then N handshakes held with
# nothing sent; divided by the
# connections the client saw established (the server's per-client cap or
# a refusal would otherwise inflate the figure).
doq_idle() { # PORT OUTJSON
	local p=$1 out=$2 before after
	# throwaway handshakes from distinct key shares: per-process caches
	# (wolfSSL's fixed-point ECC cache when built in: ~12 MiB for 15
	# peers) go into the baseline, not into the per-connection cost
	taskset -c "$CCPU" "$CLIENT" -s 127.0.0.1 -p "$p" -q "$NAME" -C 32 \
		-Q >/dev/null
	sleep 1
	before=$(rss "$SPID")
	taskset -c "$CCPU" "$CLIENT" -s 127.0.0.1 -p "$p" -c idle -C "$IDLE" \
		-d 4 -t 30 -Q >"$TMP/idle.out" &
	local cp=$!
	PIDS+=("$cp")
	for _ in $(seq 350); do
		grep -q idle_ready "$TMP/idle.out" && break
		sleep 0.1
	done
	sleep 1
	after=$(rss "$SPID")
	wait "$cp" || true
	"$PY" - "$TMP/idle.out" "$before" "$after" "$out" <<'EOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ready = next((l for l in lines if l.get("idle_ready")), {})
summ = next((l for l in lines if l.get("summary")), {})
b, a = int(sys.argv[2]), int(sys.argv[3])
est = ready.get("established", 0)
r = {"idle_conns": ready.get("conns"), "established": est,
     "still_open_at_end": summ.get("still_open"),
     "rss_before_kib": b, "rss_after_kib": a,
     "kib_per_conn": round((a - b) / est, 2) if est else None}
json.dump(r, open(sys.argv[4], "w"))
print(json.dumps(r))
EOF
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
say "ports: upstream $UP, DoQ $DOQ, DoT $DOT, knotd $KNOT; server on CPU" \
	"$SCPU, load generator + upstream on CPU $CCPU; load average $LOAD0"
say "raw output: $OUT"

for peer in $PEERS; do
	say "$peer"
	case $peer in
	dnsgw-doq)
		start_dnsgw "$OUT/dnsgw-doq.server.log"
		doq_load "$DOQ" bench "$OUT/$peer.queries.json" -C "$CONNS" -S "$STREAMS"
		doq_load "$DOQ" handshakes "$OUT/$peer.handshakes.json" -C "$HS_CONNS"
		stop_server
		start_dnsgw "$OUT/dnsgw-doq.server-idle.log"
		doq_idle "$DOQ" "$OUT/$peer.idle.json"
		stop_server
		;;
	knotd-doq)
		start_knotd "$OUT/knotd.server.log"
		doq_load "$KNOT" bench "$OUT/$peer.queries.json" -C "$CONNS" -S "$STREAMS"
		doq_load "$KNOT" handshakes "$OUT/$peer.handshakes.json" -C "$HS_CONNS"
		stop_server
		start_knotd "$OUT/knotd.server-idle.log"
		doq_idle "$KNOT" "$OUT/$peer.idle.json"
		stop_server
		;;
	dnsgw-dot)
		start_dnsgw "$OUT/dnsgw-dot.server.log"
		printf '%s A\n' "$NAME" >"$TMP/q.txt"
		taskset -c "$CCPU" dnsperf -m dot -s 127.0.0.1 -p "$DOT" -d "$TMP/q.txt" \
			-c "$CONNS" -q $((CONNS * STREAMS)) -l "$SECS" -v \
			>"$OUT/$peer.queries.txt" 2>&1 || true
		tool dnsperf "$OUT/$peer.queries.txt" "$OUT/$peer.queries.json" "  $peer queries"
		# one query per connection: every answer is one handshake
		taskset -c "$CCPU" dnsperf -m dot -s 127.0.0.1 -p "$DOT" -d "$TMP/q.txt" \
			-c "$HS_CONNS" -q "$HS_CONNS" -l "$SECS" \
			-O num-queries-per-conn=1 >"$OUT/$peer.handshakes.txt" 2>&1 || true
		"$PY" - "$OUT/$peer.handshakes.txt" "$OUT/$peer.handshakes.json" <<'EOF'
import json, re, sys
t = open(sys.argv[1]).read()
m = re.search(r"Queries completed:\s+(\d+)", t)
s = re.search(r"Run time \(s\):\s+([\d.]+)", t)
n, secs = (int(m.group(1)) if m else 0), (float(s.group(1)) if s else 0)
r = {"answers": n, "handshakes": n, "refused": 0,
     "handshakes_per_s": round(n / secs, 1) if secs else None}
json.dump(r, open(sys.argv[2], "w"))
print(json.dumps(r))
EOF
		stop_server
		start_dnsgw "$OUT/dnsgw-dot.server-idle.log"
		SPID_IDLE=$SPID
		taskset -c "$CCPU" "$PY" "$HERE/benchtool.py" idle "$DOT" "$TMP/cert.pem" \
			"$SPID_IDLE" "$IDLE" "$OUT/$peer.idle.json" "  $peer" || true
		stop_server
		;;
	esac
done

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT/loadavg_end"
echo
echo "DoQ, $(nproc) CPUs, load average $LOAD0 at start, $(cut -d' ' -f1-3 /proc/loadavg) at end;" \
	"$CONNS conns x $STREAMS in flight, $HS_CONNS conns cycling, $IDLE idle conns, ${SECS}s each"
"$PY" - "$OUT" <<'EOF' | tee "$OUT/table.txt"
import json, os, sys
d = sys.argv[1]
def j(peer, load):
	try:
		return json.load(open(os.path.join(d, "%s.%s.json" % (peer, load))))
	except (OSError, ValueError):
		return {}
peers = ["dnsgw-doq", "knotd-doq", "dnsgw-dot"]
rows = [("queries", "qps", "QPS", 0), ("queries", "p50_ms", "latency p50 (ms)", 2),
	("queries", "p90_ms", "latency p90 (ms)", 2), ("queries", "p99_ms", "latency p99 (ms)", 2),
	("handshakes", "handshakes_per_s", "handshakes/s (1 query each)", 1),
	("handshakes", "refused", "handshakes refused by the server", 0),
	("idle", "established", "idle: connections established", 0),
	("idle", "kib_per_conn", "idle: RSS per idle conn (KiB)", 2)]
print("%-34s %11s %11s %11s %12s" % ("metric", *peers, "gw/knotd DoQ"))
print("-" * 84)
for load, k, name, nd in rows:
	v = [j(p, load).get(k, j(p, load).get("alive") if k == "established"
			     else None) for p in peers]
	f = lambda x: "n/a" if x is None else ("%." + str(nd) + "f") % x
	r = "%.2f" % (v[0] / v[1]) if isinstance(v[0], (int, float)) and v[1] else "n/a"
	print("%-34s %11s %11s %11s %12s" % (name, *map(f, v), r))
print("\nknotd answers from its zone; dnsgw forwards every query to bench/responder.c over UDP.")
EOF
