#!/bin/bash
# Installs what is missing, builds, and starts dnsgw with its zero-config
# defaults (or with the arguments given, e.g. ./run.sh -c dnsgw.yaml).
set -euo pipefail
cd "$(dirname "$0")"
./deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target dnsgw
exec ./build/dnsgw "$@"
