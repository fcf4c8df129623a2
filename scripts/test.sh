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

# build DIR LABEL CMAKE-ARGS...: configure and build, compiler output to
# DIR.log (its tail is shown on failure), so the screen keeps only progress.
build() {
        local dir=$1 label=$2
        shift 2
        echo "== $dir: $label (build log: $dir.log)"
        if ! { cmake -S . -B "$dir" "$@" && cmake --build "$dir" -j"$JOBS"; } >"$dir.log" 2>&1; then
                tail -n 40 "$dir.log" >&2
                echo "build of $dir failed; the whole log is $dir.log" >&2
                exit 1
        fi
}

build build-asan "clang-14 + ASan + UBSan + libFuzzer" -DCMAKE_C_COMPILER=clang-14 \
      -DCMAKE_BUILD_TYPE=Debug -DVMSIG_SANITIZE=ON -DVMSIG_FUZZ=ON -DVMSIG_WERROR=ON
ctest --test-dir build-asan --output-on-failure -j"$JOBS"

build build "gcc, -Werror" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVMSIG_WERROR=ON
# Tests labelled "once" (long real-guest runs: libvirt, the stock-kernel
# guest, Wine) already ran against the sanitized build above.
ctest --test-dir build --output-on-failure -j"$JOBS" --label-exclude once
