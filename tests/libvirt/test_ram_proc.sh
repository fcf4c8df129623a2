#!/bin/bash
# SPDX-License-Identifier: MIT
# Guest RAM without a path, for plain QEMU announced by trigger files
# (src/adapters/ram_proc.c): vmsigd finds it in QEMU's fd table (the QMP
# peer's pid) and reads the guest kernel's banner through the memctx.
#   - memfd backing, trigger file without ram=;
#   - a mem-path directory (QEMU creates its file there and unlinks it),
#     trigger file with ram= naming the directory.
set -euo pipefail

B=${VMSIG_BUILD_DIR:?VMSIG_BUILD_DIR: the build directory}
GUEST=${VMSIG_GUEST_DIR:?VMSIG_GUEST_DIR: tests/vm/build-guest.sh output}
export VMSIG_GUEST_DIR=$GUEST
CTL=$B/src/tools/vmsigctl
# shellcheck disable=SC1091
. "$(dirname "$0")/../vm/qemu.sh"
T0=$(date +%s)
say() { echo "# [$(($(date +%s) - T0))s] $*"; }

D=$(mktemp -d /tmp/vmsig-rp.XXXXXX)
RAMDIR=$(mktemp -d /dev/shm/vmsig-test-rpdir.XXXXXX)
fail() {
        echo "FAIL: $*"
        echo "--- vmsigctl list"; "$CTL" list 2>&1 || true
        echo "--- vmsigd log"; tail -30 "$D/vmsigd.log" || true
        exit 1
}
cleanup() {
        set +e
        [ -n "${VMSIGD_PID:-}" ] && kill "$VMSIGD_PID" && wait "$VMSIGD_PID"
        stop_guest m >/dev/null 2>&1
        stop_guest d >/dev/null 2>&1
        rm -rf "$D" "$RAMDIR"
}
trap cleanup EXIT

mkdir -p "$D/vms"
cat >"$D/vmsigd.conf" <<CONF
[daemon]
socket = $D/vmsigd.sock
trigger_dir = $D/vms
audit = file:$D/audit.log
libvirt_uri = none
CONF
export VMSIG_SOCKET=$D/vmsigd.sock
"$B/src/daemon/vmsigd" -c "$D/vmsigd.conf" >"$D/vmsigd.log" 2>&1 &
VMSIGD_PID=$!

BANNER=0x$(awk '$3 == "linux_banner" { print $1; exit }' "$GUEST/System.map")
banner_ok() { "$CTL" read "$1" "$BANNER" 64 2>/dev/null | grep -aq "Linux version"; }
wait_banner() {
        local end=$(($(date +%s) + 90))
        while [ "$(date +%s)" -lt "$end" ]; do
                banner_ok "$1" && return 0
                sleep 0.3
        done
        fail "$1: no banner through the memctx: $("$CTL" read "$1" "$BANNER" 64 2>&1)"
}
announce() { # name qmp [ram]
        printf 'name=%s\nqmp=%s\n%s' "$1" "$2" "${3:+ram=$3
}" >"$D/vms/.$1.tmp"
        mv "$D/vms/.$1.tmp" "$D/vms/$1.vm"
}

say "memfd backing, no ram= in the trigger file"
start_guest m -object memory-backend-memfd,id=rp0,size=256M,share=on -machine memory-backend=rp0 ||
        fail "QEMU (memfd) did not start"
announce m "$GUEST_QMP"
wait_for_serial VMSIG-GUEST-READY 120 m || fail "memfd guest did not boot"
wait_banner m
say "memfd: $("$CTL" read m "$BANNER" 64 | grep -ao 'Linux version [^ ]*')"
narrowed=
for fd in /proc/"$GUEST_PID"/fd/*; do # the guest RAM: QEMU's 256 MiB memfd
        case $(readlink "$fd") in /memfd:*) ;; *) continue ;; esac
        [ "$(stat -L -c %s "$fd")" = 268435456 ] || continue
        mode=$(stat -L -c %a "$fd")
        [ "$mode" = 755 ] || fail "QEMU's RAM memfd is mode $mode: vmsigd should have narrowed 0777 to 0755"
        narrowed="$(readlink "$fd"), mode $mode"
done
[ -n "$narrowed" ] || fail "no 256 MiB memfd in QEMU's fd table"
say "QEMU's RAM memfd narrowed: $narrowed"
UTS=0x$(awk '$3 == "init_uts_ns" { print $1; exit }' "$GUEST/System.map")
out=$("$CTL" write m "$UTS" 00 2>&1) && fail "a MEMWRITE into RAM opened read-only succeeded"
echo "$out" | grep -qi "read-only" || fail "MEMWRITE into read-only RAM: unexpected answer: $out"
say "MEMWRITE refused: $out"
stop_guest m
rm -f "$D/vms/m.vm"

say "mem-path directory: QEMU's file there is unlinked; ram= names the directory"
start_guest d -object "memory-backend-file,id=rp0,size=256M,mem-path=$RAMDIR,share=on" \
        -machine memory-backend=rp0 || fail "QEMU (mem-path directory) did not start"
[ -z "$(ls -A "$RAMDIR")" ] || fail "QEMU left a file in $RAMDIR: $(ls -A "$RAMDIR")"
announce d "$GUEST_QMP" "$RAMDIR"
wait_for_serial VMSIG-GUEST-READY 120 d || fail "mem-path guest did not boot"
wait_banner d
say "mem-path directory: $("$CTL" read d "$BANNER" 64 | grep -ao 'Linux version [^ ]*')"
say "done"
