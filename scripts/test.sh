#!/usr/bin/env bash
# The whole test suite, as CI runs it: dependencies, then two builds, each
# running every test through ctest:
#   build-asan  clang-14, ASan+UBSan, libFuzzer harnesses run for a bounded time
#   build       gcc, -Werror, plus helgrind on the multi-threaded test
# Fails on the first failing build or test. ctest's summary is the last output.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
JOBS=$(nproc)

echo "== build-asan: clang-14 + ASan + UBSan + libFuzzer =="
cmake -S . -B build-asan -DCMAKE_C_COMPILER=clang-14 -DCMAKE_BUILD_TYPE=Debug \
      -DVMSIG_SANITIZE=ON -DVMSIG_FUZZ=ON -DVMSIG_WERROR=ON >/dev/null
cmake --build build-asan -j"$JOBS"
ctest --test-dir build-asan --output-on-failure -j"$JOBS"

echo "== build: gcc, -Werror =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVMSIG_WERROR=ON >/dev/null
cmake --build build -j"$JOBS"
ctest --test-dir build --output-on-failure -j"$JOBS"
