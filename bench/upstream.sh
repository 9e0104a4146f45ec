#!/bin/bash
# bench/upstream.sh - cache-miss forwarding over a stream upstream, dnsgw
# side by side with dnsdist: DoT in front, then a TCP upstream and a DoT
# upstream behind (same upstream, same load, same run).
#
#   bench/upstream.sh               about 1-2 minutes with the defaults
#
# Not a test: no pass/fail. Prints QPS, latency percentiles and the peak
# number of upstream connections each server opened. Raw output goes to
# bench/out/up-<timestamp>/ (git-ignored). Everything runs on 127.0.0.1.
#
# Upstream: unbound, answering every name under bench.test with A 192.0.2.1
# from local data (redirect zone) over TCP and DoT; unique random names per
# query, so nothing is cached by either gateway (neither has a cache here).
#
# Environment (defaults in brackets):
#   DNSGW               dnsgw binary [build/dnsgw]
#   BENCH_PEERS         ["dnsgw dnsdist"]
#   BENCH_UPSTREAMS     ["tcp tls"]
#   BENCH_SECS          load duration [10]
#   BENCH_CONNS         client DoT connections [20]
#   BENCH_OUTSTANDING   queries in flight, all connections [500]
#   BENCH_SERVER_CPU    core of the gateway [0]
#   BENCH_CLIENT_CPU    core of dnsperf and unbound [1]
set -euo pipefail

PEERS=${BENCH_PEERS:-dnsgw dnsdist}
UPS=${BENCH_UPSTREAMS:-tcp tls}
SECS=${BENCH_SECS:-10}
CONNS=${BENCH_CONNS:-20}
OUTST=${BENCH_OUTSTANDING:-500}
. "$(dirname "$0")/common.sh"

bench_start up dnsperf taskset openssl unbound ss

read -r UP_PORT UP_TLS DOT_PORT PLAIN_PORT <<<"$(tool ports 4)"
bench_cert
tool queries "$TMP/queries.txt" 300000

cat >"$TMP/unbound.conf" <<EOF
server:
    interface: 127.0.0.1@$UP_PORT
    interface: 127.0.0.1@$UP_TLS
    tls-port: $UP_TLS
    tls-service-key: "$KEY"
    tls-service-pem: "$CERT"
    port: $UP_PORT
    do-ip6: no
    do-daemonize: no
    chroot: ""
    username: ""
    directory: "$TMP"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 0
    num-threads: 1
    module-config: "iterator"
    access-control: 127.0.0.0/8 allow
    incoming-num-tcp: 1000
    local-zone: "." refuse
    local-zone: "bench.test." redirect
    local-data: "bench.test. 60 IN A 192.0.2.1"
remote-control:
    control-enable: no
EOF
taskset -c "$CCPU" unbound -d -c "$TMP/unbound.conf" >"$OUT/unbound.log" 2>&1 &
PIDS+=($!)
sleep 1

SERVER_PID=
start_server() { # peer upstream-proto log
	local peer=$1 up=$2 log=$3 url
	case $peer in
	dnsgw)
		if [ "$up" = tls ]; then
			url="tls://127.0.0.1:$UP_TLS#bench.test"
		else
			url="tcp://127.0.0.1:$UP_PORT"
		fi
		cat >"$TMP/dnsgw.yaml" <<EOF
limits: {max_conns_per_client: 5000}
upstream: {ca_file: "$CERT", max_conns_per_upstream: 8,
           max_inflight_per_conn: 100}
EOF
		taskset -c "$SCPU" "$DNSGW" -c "$TMP/dnsgw.yaml" --threads 1 \
			--listen "dot://127.0.0.1:$DOT_PORT" --upstream "$url" \
			--cert "$CERT" --key "$KEY" --log-level warn >"$log" 2>&1 &
		;;
	dnsdist)
		if [ "$up" = tls ]; then
			be="newServer({address=\"127.0.0.1:$UP_TLS\", tls=\"openssl\", subjectName=\"bench.test\", caStore=\"$CERT\", maxInFlight=100})"
		else
			be="newServer({address=\"127.0.0.1:$UP_PORT\", tcpOnly=true, maxInFlight=100})"
		fi
		cat >"$TMP/dnsdist.conf" <<EOF
setSecurityPollSuffix("")
setLocal("127.0.0.1:$PLAIN_PORT")
addTLSLocal("127.0.0.1:$DOT_PORT", "$CERT", "$KEY", {provider="openssl", maxInFlight=100})
$be
setACL({"127.0.0.0/8"})
setMaxTCPClientThreads(1)
setMaxTCPConnectionsPerClient(0)
EOF
		cp "$TMP/dnsdist.conf" "$OUT/dnsdist-$up.conf"
		taskset -c "$SCPU" dnsdist --supervised --disable-syslog \
			-C "$TMP/dnsdist.conf" >"$log" 2>&1 &
		;;
	esac
	SERVER_PID=$!
	PIDS+=("$SERVER_PID")
	tool wait-dot "$DOT_PORT" "$CERT" 15 || { cat "$log" >&2; die "$peer did not start"; }
}

# Peak of established connections from the server process to the upstream.
count_conns() { # pid port outfile seconds
	local peak=0 n
	for _ in $(seq $(($4 * 5))); do
		n=$(ss -tanpH "dport = :$2" 2>/dev/null | grep -c "pid=$1," || true)
		[ "$n" -gt "$peak" ] && peak=$n
		sleep 0.2
	done
	echo "$peak" >"$3"
}

for up in $UPS; do
	port=$UP_PORT
	[ "$up" = tls ] && port=$UP_TLS
	for peer in $PEERS; do
		say "$peer, $up upstream"
		start_server "$peer" "$up" "$OUT/$peer.$up.log"
		taskset -c "$CCPU" dnsperf -m dot -s 127.0.0.1 -p "$DOT_PORT" \
			-d "$TMP/queries.txt" -l 2 -c "$CONNS" -q 100 >/dev/null 2>&1 || true
		count_conns "$SERVER_PID" "$port" "$OUT/$peer.$up.conns" "$SECS" &
		cpid=$!
		taskset -c "$CCPU" dnsperf -m dot -s 127.0.0.1 -p "$DOT_PORT" \
			-d "$TMP/queries.txt" -v -l "$SECS" -c "$CONNS" -q "$OUTST" \
			>"$OUT/$peer.$up.txt" 2>&1 || say "warning: dnsperf non-zero"
		wait "$cpid" || true
		tool dnsperf "$OUT/$peer.$up.txt" "$OUT/$peer.$up.json" \
			"  $peer via $up" >/dev/null
		stop_server
	done
done

echo
echo "cache-miss forwarding, DoT in front, $CONNS client connections, $OUTST in flight, ${SECS}s"
printf '%-8s %-5s %10s %9s %9s %7s %s\n' peer up qps p50_ms p99_ms lost "upstream conns (peak)"
for up in $UPS; do
	for peer in $PEERS; do
		"$PY" - "$OUT/$peer.$up.json" "$(cat "$OUT/$peer.$up.conns" 2>/dev/null || echo ?)" "$peer" "$up" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print('%-8s %-5s %10.0f %9s %9s %7s %s' % (sys.argv[3], sys.argv[4], r.get('qps') or 0,
      r.get('p50_ms'), r.get('p99_ms'), r.get('lost'), sys.argv[2]))
EOF
	done
done | tee "$OUT/table.txt"
