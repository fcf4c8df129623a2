#!/usr/bin/env bash
# The newcomer's first command: install dependencies, build, run the demo.
# Today the demo is the bus in one process with stub VMs (no QEMU needed);
# see README.md for what it shows.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
exec ./build/src/tools/vmsig-demo-inproc "$@"
