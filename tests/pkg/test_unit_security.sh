#!/bin/sh
# `systemd-analyze security` exposure of packaging/vmsigd.service stays at or
# below a target (issue 9: the unit was rated 4.2). Prints the score; above
# the target it also prints every setting that counts against the unit.
# Exit 77 (skip) without systemd-analyze, or with one too old for --offline,
# except in CI (CI=true), where the test must run.
# usage: test_unit_security.sh UNIT_FILE MAX_EXPOSURE
set -u
unit=$1
max=$2
skip() {
        if [ "${CI:-}" = true ]; then
                echo "FAIL: $* (CI must run this test: scripts/deps.sh installs systemd)"
                exit 1
        fi
        echo "SKIP: $*"
        exit 77
}
command -v systemd-analyze >/dev/null 2>&1 || skip "systemd-analyze is not installed (Debian: systemd)"
[ -r "$unit" ] || {
        echo "FAIL: cannot read $unit"
        exit 1
}
work=$(mktemp -d "${TMPDIR:-/tmp}/vmsig-unit-security.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT INT TERM
# The unit name in the report is the file name: keep it.
cp "$unit" "$work/vmsigd.service"

# --offline=true reads the file without PID 1 (systemd >= 250).
out=$(cd "$work" && systemd-analyze security --offline=true --no-pager vmsigd.service 2>&1)
score=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for vmsigd\.service: \([0-9][0-9]*\.[0-9]\).*/\1/p')
if [ -z "$score" ]; then
        case $out in
        *offline*) skip "this systemd-analyze has no --offline (systemd >= 250 needed): $out" ;;
        esac
        printf 'FAIL: no exposure level in the output of systemd-analyze security:\n%s\n' "$out"
        exit 1
fi
echo "exposure of $(basename "$unit"): $score (target <= $max)"
if awk -v s="$score" -v m="$max" 'BEGIN { exit !(s + 0 > m + 0) }'; then
        echo "FAIL: exposure $score is above $max. Settings that count against the unit:"
        printf '%s\n' "$out" | grep '✗' | sed 's/^/  /'
        exit 1
fi
echo "ok: exposure $score <= $max"
