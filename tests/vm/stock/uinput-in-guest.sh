#!/bin/bash
# SPDX-License-Identifier: MIT
# Runs vmsig's uinput path for real, inside the stock-kernel guest
# (tests/vm/build-stock-guest.sh), whose kernel has the uinput module that the
# build machines lack.
#
#   uinput-in-guest.sh [core|pkg]  the checks of uinput-checks.sh (default
#                               core: the streams through vmsigd; pkg: the
#                               udev rule and the fd-store restart): exit 0
#                               only if every VMSIG-CHECK line is PASS
#   uinput-in-guest.sh --bench  bench/actuate --input-only inside the guest
#                               (TCG figures), printed as is
#
# Environment: VMSIG_STOCK_GUEST_DIR (build-stock-guest.sh output), VMSIGD,
# VMSIGCTL, VMSIG_UINPUT, TEST_VMCTL, EVDEV_FRAMES, UINPUT_LOOKALIKE,
# FDSTORE_SIM (binary paths), ACTUATE (--bench), VMSIG_UDEVADM (default: the host's udevadm, run
# in the guest as `udevadm test` on the rule), UDEV_RULES (default
# packaging/60-vmsig-uinput.rules), VMSIG_QEMU (default qemu-system-x86_64),
# VMSIG_KEEP_LOGS=1.
#
# The binaries go into a second cpio appended to the guest's initrd, each with
# the shared libraries ldd names and the dynamic loader, at the same paths.
# QEMU always dies with this script (trap), its RAM is a unique /dev/shm file
# that is removed, and the whole run is bounded by a timeout.
set -euo pipefail

die() {
        echo "uinput-in-guest: $*" >&2
        exit 1
}
MODE=${1:-core}
[ "$MODE" = --bench ] && MODE=bench
case $MODE in
core | pkg | bench) ;;
*) die "usage: $0 [core|pkg|--bench]" ;;
esac
SELF_DIR=$(dirname "$(readlink -f "$0")")
GUEST=${VMSIG_STOCK_GUEST_DIR:?set VMSIG_STOCK_GUEST_DIR to an output of tests/vm/build-stock-guest.sh}
QEMU=${VMSIG_QEMU:-qemu-system-x86_64}
{ [ -f "$GUEST/vmlinuz" ] && [ -f "$GUEST/initrd.cpio.gz" ]; } ||
        die "$GUEST: no vmlinuz/initrd.cpio.gz (run build-stock-guest.sh)"
command -v "$QEMU" >/dev/null || die "$QEMU not found (apt-get install qemu-system-x86)"

declare -A BIN=()
if [ "$MODE" = bench ]; then
        BIN[actuate]=${ACTUATE:?set ACTUATE to the bench/actuate binary}
else
        BIN[vmsigd]=${VMSIGD:?set VMSIGD}
        BIN[vmsigctl]=${VMSIGCTL:?set VMSIGCTL}
        BIN[vmsig-uinput]=${VMSIG_UINPUT:?set VMSIG_UINPUT}
        BIN[vmsig-evdev-frames]=${EVDEV_FRAMES:?set EVDEV_FRAMES}
fi
if [ "$MODE" = core ]; then
        BIN[test_vmctl]=${TEST_VMCTL:?set TEST_VMCTL}
elif [ "$MODE" = pkg ]; then
        BIN[vmsig-uinput-lookalike]=${UINPUT_LOOKALIKE:?set UINPUT_LOOKALIKE}
        BIN[vmsig-fdstore-sim]=${FDSTORE_SIM:?set FDSTORE_SIM}
        BIN[udevadm]=${VMSIG_UDEVADM:-$(command -v udevadm || echo /bin/udevadm)}
        UDEV_RULES=${UDEV_RULES:-$SELF_DIR/../../../packaging/60-vmsig-uinput.rules}
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vmsig-uinput-guest.XXXXXX")
SHM=/dev/shm/vmsig-test-uinput-$$-${WORK##*.}
QPID=""
cleanup() {
        if [ -n "$QPID" ]; then
                kill -KILL "$QPID" 2>/dev/null || true
                wait "$QPID" 2>/dev/null || true
        fi
        rm -f "$SHM"
        if [ "${VMSIG_KEEP_LOGS:-0}" = 1 ]; then
                echo "uinput-in-guest: kept $WORK" >&2
        else
                rm -rf "$WORK"
        fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ---- the appended archive: /test/run.sh, /test/bin/*, their libraries ----
ROOT=$WORK/root
mkdir -p "$ROOT/test/bin"
cp "$SELF_DIR/uinput-checks.sh" "$ROOT/test/run.sh"
echo "$MODE" >"$ROOT/test/mode"
if [ "$MODE" = pkg ]; then
        # the rule under test, and the group it names (later archives win)
        mkdir -p "$ROOT/etc/udev/rules.d"
        cp "$UDEV_RULES" "$ROOT/etc/udev/rules.d/60-vmsig-uinput.rules"
        printf 'root:x:0:\nkvm:x:994:\n' >"$ROOT/etc/group"
fi
copy_lib() { # PATH: at the same path, symlinks resolved
        [ -e "$ROOT$1" ] && return 0
        mkdir -p "$ROOT$(dirname "$1")"
        cp -L "$1" "$ROOT$1"
}
for name in "${!BIN[@]}"; do
        src=${BIN[$name]}
        [ -x "$src" ] || die "$name: $src is not an executable"
        cp "$src" "$ROOT/test/bin/$name"
        # "libx.so => /path (addr)", and the loader as "/lib64/ld-... (addr)"
        while read -r lib; do
                copy_lib "$lib"
        done < <(ldd "$src" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
done
(cd "$ROOT" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner=0:0 --quiet) | gzip -1 >"$WORK/test.cpio.gz"
cat "$GUEST/initrd.cpio.gz" "$WORK/test.cpio.gz" >"$WORK/initrd.gz"
echo "uinput-in-guest: $MODE; appended $(du -k "$WORK/test.cpio.gz" | cut -f1) KiB ($(find "$ROOT" -type f | wc -l) files)"

# ---- boot; the guest powers off when run.sh is done ----
LOG=$WORK/serial.log
: >"$LOG"
MEM=512M
[ "$MODE" = bench ] && MEM=1G # ASan builds reserve much; the bench's rings too
BUDGET=${VMSIG_UINPUT_GUEST_TIMEOUT:-160} # below ctest's TIMEOUT 180, with the setup
[ "$MODE" = bench ] && BUDGET=${VMSIG_UINPUT_GUEST_TIMEOUT:-580}
START=$SECONDS
"$QEMU" -accel tcg -m "$MEM" -smp 1 -no-reboot -display none -nodefaults -monitor none \
        -name "vmsig-test-uinput-$$" \
        -object "memory-backend-file,id=ram0,size=$MEM,mem-path=$SHM,share=on" \
        -machine "q35,memory-backend=ram0" \
        -kernel "$GUEST/vmlinuz" -initrd "$WORK/initrd.gz" \
        -append "console=ttyS0 panic=-1 quiet" \
        -serial "file:$LOG" </dev/null >"$WORK/qemu.out" 2>&1 &
QPID=$!
shown=0
# Progress: every guest line as it comes; stop at poweroff or the budget.
while kill -0 "$QPID" 2>/dev/null; do
        n=$(wc -l <"$LOG")
        if [ "$n" -gt "$shown" ]; then
                sed -n "$((shown + 1)),${n}p" "$LOG" | tr -d '\r'
                shown=$n
        fi
        if [ $((SECONDS - START)) -gt "$BUDGET" ]; then
                echo "uinput-in-guest: no poweroff within ${BUDGET}s" >&2
                break
        fi
        sleep 0.2
done
kill -KILL "$QPID" 2>/dev/null || true
wait "$QPID" 2>/dev/null || true
QPID=""
tail -n +"$((shown + 1))" "$LOG" | tr -d '\r'
echo "uinput-in-guest: guest ran $((SECONDS - START)) s (TCG)"
tr -d '\r' <"$LOG" >"$WORK/serial.txt"

grep -q '^VMSIG-STOCK-READY' "$WORK/serial.txt" || die "the guest did not boot; QEMU: $(cat "$WORK/qemu.out")"
if grep -q '^VMSIG-STOCK-MODULE-FAILED' "$WORK/serial.txt"; then
        die "modules failed to load: $(grep '^VMSIG-STOCK-MODULE-FAILED' "$WORK/serial.txt" | tr '\n' ' ')"
fi
if [ "$MODE" = bench ]; then
        grep -q '^VMSIG-BENCH-END rc=0' "$WORK/serial.txt" || die "the bench did not finish"
        grep -q '^VMSIG-BENCH INVALID' "$WORK/serial.txt" && die "the bench reported INVALID"
        exit 0
fi
pass=$(grep -c '^VMSIG-CHECK PASS ' "$WORK/serial.txt" || true)
failn=$(grep -c '^VMSIG-CHECK FAIL ' "$WORK/serial.txt" || true)
grep -q '^VMSIG-CHECKS-DONE' "$WORK/serial.txt" || die "the checks did not finish ($pass passed, $failn failed so far)"
grep -q '^VMSIG-STOCK-RUN-EXIT rc=' "$WORK/serial.txt" || die "run.sh did not finish"
if grep -qE 'ERROR: AddressSanitizer|runtime error: |LeakSanitizer' "$WORK/serial.txt"; then
        die "a sanitizer reported an error (above)"
fi
[ "$pass" -gt 0 ] || die "no check ran"
if [ "$failn" != 0 ]; then
        echo "uinput-in-guest: $failn check(s) failed:" >&2
        grep '^VMSIG-CHECK FAIL ' "$WORK/serial.txt" >&2
        exit 1
fi
echo "uinput-in-guest: all $pass checks passed"
