#!/bin/sh
# packaging/vmsig-uinput@.service: `systemd-analyze verify` of an instance
# with ExecStart pointed at the vmsig-uinput of this build, the settings
# vmsig-uinput relies on (fd store, notify, /dev/uinput and nothing else), and
# its `systemd-analyze security` exposure at or below a target. The udev rule
# is exercised for real in the stock-kernel guest (vm_uinput_stock).
# Exit 77 (skip) without systemd-analyze, or with one too old for --offline,
# except in CI (CI=true).
# usage: test_uinput_unit.sh PACKAGING_DIR VMSIG_UINPUT MAX_EXPOSURE
set -u
pkg=$(cd "$1" && pwd)
bin=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
max=$3
unit=$pkg/vmsig-uinput@.service
skip() {
        if [ "${CI:-}" = true ]; then
                echo "FAIL: $* (CI must run this test: scripts/deps.sh installs systemd)"
                exit 1
        fi
        echo "SKIP: $*"
        exit 77
}
command -v systemd-analyze >/dev/null 2>&1 || skip "systemd-analyze is not installed (Debian: systemd)"
work=$(mktemp -d "${TMPDIR:-/tmp}/vmsig-uinput-unit.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT INT TERM
fails=0
bad() {
        fails=$((fails + 1))
        printf 'FAIL: %s\n' "$*"
}

# An instance file: a template itself cannot be verified or rated.
inst=vmsig-uinput@demo.service
sed "s|^ExecStart=/usr/sbin/vmsig-uinput |ExecStart=$bin |" "$unit" >"$work/$inst"
grep -q "^ExecStart=$bin hold %i\$" "$work/$inst" || bad "ExecStart is not '/usr/sbin/vmsig-uinput hold %i'"
if ! out=$(cd "$work" && systemd-analyze verify --man=no "./$inst" 2>&1) || [ -n "$out" ]; then
        bad "systemd-analyze verify: $out"
fi

# %i, not %I: %I would turn the '-' of a VM name like win-10 into '/'.
for want in Type=notify FileDescriptorStoreMax=2 "RuntimeDirectory=vmsig/uinput" RuntimeDirectoryPreserve=yes \
        DevicePolicy=closed "DeviceAllow=/dev/uinput rw" CapabilityBoundingSet= NoNewPrivileges=yes \
        ProtectSystem=strict "ReadWritePaths=/run/vmsig/uinput" PrivateNetwork=yes RestrictAddressFamilies=AF_UNIX \
        SystemCallFilter=@system-service "Documentation=man:vmsig-uinput(1)"; do
        grep -qxF "$want" "$unit" || bad "vmsig-uinput@.service lacks '$want'"
done
# PrivateDevices= would hide /dev/uinput; Restart=always would recreate a
# pair for a VM that was released on purpose.
grep -q '^PrivateDevices=yes' "$unit" && bad "PrivateDevices=yes hides /dev/uinput"
grep -q '^Restart=always' "$unit" && bad "Restart=always"
grep -q '%I' "$unit" && bad "%I unescapes '-' to '/': use %i"

out=$(cd "$work" && systemd-analyze security --offline=true --no-pager "$inst" 2>&1)
score=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for vmsig-uinput@demo\.service: \([0-9][0-9]*\.[0-9]\).*/\1/p')
if [ -z "$score" ]; then
        case $out in
        *offline*) skip "this systemd-analyze has no --offline (systemd >= 250 needed): $out" ;;
        esac
        bad "no exposure level in the output of systemd-analyze security: $out"
else
        echo "exposure of vmsig-uinput@.service: $score (target <= $max)"
        if awk -v s="$score" -v m="$max" 'BEGIN { exit !(s + 0 > m + 0) }'; then
                printf '%s\n' "$out" | grep '✗'
                bad "exposure $score is above $max"
        fi
fi

[ "$fails" -eq 0 ] && echo "ok: vmsig-uinput@.service verifies, keeps its settings, exposure $score"
[ "$fails" -eq 0 ]
