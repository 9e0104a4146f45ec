# common.sh - what every bench script shares. Sourced (not run) after the
# script has set its own defaults; see bench/README.md for the knobs.
#
#   bench_start NAME TOOLS...  checks the tools (and the peers' binaries),
#                              makes $TMP (private, removed on exit) and
#                              $OUT (bench/out/<time>-NAME), traps signals
#   bench_nofile N             raises the descriptor limit, dies below N
#   bench_cert                 $CERT/$KEY: a P-256 pair for bench.test and
#                              127.0.0.1, valid 2 days, inside $TMP
#   bench_responder            builds bench/responder.c as $TMP/responder
#   stop_pid PID               SIGTERM, 5 s, then SIGKILL; reaps it
#   stop_server                stops $SERVER_PID and forgets it
#   client CMD...              runs CMD in the background and waits, so
#                              that a signal to the script stops it too
# Every background process goes in PIDS; all are stopped on exit, where
# bench_cleanup_extra (if the script defines it) runs too.

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
DNSGW=${DNSGW:-$ROOT/build/dnsgw}
SCPU=${BENCH_SERVER_CPU:-0}
CCPU=${BENCH_CLIENT_CPU:-1}
PY=/usr/bin/python3
PIDS=()

tool() { "$PY" "$HERE/benchtool.py" "$@"; }
say() { printf 'bench: %s\n' "$*"; }
die() { printf 'bench: FAILED: %s\n' "$*" >&2; exit 1; }

stop_pid() {
	local pid=$1
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

bench_cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		stop_pid "$p"
	done
	if declare -F bench_cleanup_extra >/dev/null; then
		bench_cleanup_extra
	fi
	rm -rf "$TMP" # private keys never leave the temporary directory
}

bench_start() {
	local name=$1 t
	shift
	for t in "$@"; do
		command -v "$t" >/dev/null ||
			die "$t missing (run ./deps.sh --bench)"
	done
	case " ${PEERS:-} " in *" dnsdist "*)
		command -v dnsdist >/dev/null ||
			die "dnsdist missing (run ./deps.sh --bench)";;
	esac
	case " ${PEERS:-} " in *" dnsgw"*)
		[ -x "$DNSGW" ] ||
			die "$DNSGW not built (cmake --build build, or set DNSGW)";;
	esac
	[ "$(nproc)" -ge 2 ] ||
		say "warning: fewer than 2 CPUs; pinning is meaningless"
	TMP=$(mktemp -d "/tmp/dnsgw-bench-$name.XXXXXX")
	OUT=$HERE/out/$(date +%Y%m%d-%H%M%S)-$name
	mkdir -p "$OUT"
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}

bench_nofile() {
	ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
	[ "$(ulimit -n)" -ge "$1" ] || die "ulimit -n $(ulimit -n) is below $1"
}

bench_cert() {
	CERT=$TMP/cert.pem
	KEY=$TMP/key.pem
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$KEY" -out "$CERT" -days 2 -subj /CN=bench.test \
		-addext subjectAltName=DNS:bench.test,IP:127.0.0.1 2>/dev/null ||
		die "openssl could not make a certificate"
}

bench_responder() {
	cc -O2 -Wall -Wextra -o "$TMP/responder" "$HERE/responder.c" ||
		die "responder did not compile"
}

stop_server() {
	local p keep=()
	stop_pid "$SERVER_PID"
	for p in "${PIDS[@]}"; do
		[ "$p" = "$SERVER_PID" ] || keep+=("$p")
	done
	PIDS=("${keep[@]}")
	SERVER_PID=
}

client() {
	local p rc=0 q keep=()
	"$@" &
	p=$!
	PIDS+=("$p")
	wait "$p" || rc=$?
	for q in "${PIDS[@]}"; do
		[ "$q" = "$p" ] || keep+=("$q")
	done
	PIDS=("${keep[@]}")
	return "$rc"
}
