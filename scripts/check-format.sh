#!/usr/bin/env bash
# Fails when a tracked C file differs from what clang-format (the repo's
# .clang-format) makes of it, naming the files. `make format` fixes them.
set -euo pipefail
cd "$(dirname "$0")/.."
CF=${CLANG_FORMAT:-$(command -v clang-format-14 || command -v clang-format || true)}
if [ -z "$CF" ]; then
        echo "check-format: clang-format not found (apt-get install clang-format)" >&2
        exit 1
fi
if ! git rev-parse --git-dir >/dev/null 2>&1; then
        echo "check-format: not a git checkout; skipped"
        exit 77
fi
mapfile -t files < <(git ls-files '*.c' '*.h')
bad=()
for f in "${files[@]}"; do
        "$CF" --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
        echo "check-format: ${#bad[@]} of ${#files[@]} files are not formatted (run: make format):"
        printf '  %s\n' "${bad[@]}"
        exit 1
fi
echo "check-format: ${#files[@]} files formatted"
