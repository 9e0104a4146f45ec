#!/bin/bash
# Builds and runs the whole test suite: unit and integration tests on a
# warnings-as-errors build, the same again under AddressSanitizer and
# UndefinedBehaviorSanitizer, and a short run of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")"
./deps.sh --test
jobs=$(nproc)

echo "== build (warnings as errors)"
cmake -S . -B build -DDNSGW_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
summary=$(mktemp)
trap 'rm -f "$summary"' EXIT

echo "== tests"
ctest --test-dir build --output-on-failure | tee -a "$summary"

echo "== build with sanitizers (address,undefined)"
cmake -S . -B build-asan -DDNSGW_WERROR=ON -DCMAKE_BUILD_TYPE=Debug \
	-DDNSGW_SANITIZE=address,undefined >/dev/null
cmake --build build-asan -j"$jobs"
echo "== tests under sanitizers"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	ctest --test-dir build-asan --output-on-failure | tee -a "$summary"

echo "== fuzz targets (clang, libFuzzer), ${DNSGW_FUZZ_SECONDS:-30} s each"
CC=clang cmake -S . -B build-fuzz -DDNSGW_FUZZ=ON -DDNSGW_TESTS=OFF \
	-DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-fuzz -j"$jobs"
for f in build-fuzz/tests/fuzz/fuzz_*; do
	[ -x "$f" ] || continue
	corpus=build-fuzz/corpus/$(basename "$f")
	mkdir -p "$corpus"
	echo "-- $f"
	"$f" -max_total_time="${DNSGW_FUZZ_SECONDS:-30}" "$corpus" 2>&1 | tail -2
done
# One closing line over both runs: "N passed, N failed".
awk '/tests passed, [0-9]+ tests failed out of/ {
	total += $NF; failed += $(NF-5) }
	END { printf "%d passed, %d failed\n", total - failed, failed }' "$summary"
