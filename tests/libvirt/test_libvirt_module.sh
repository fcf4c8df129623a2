#!/bin/bash
# SPDX-License-Identifier: MIT
# The libvirt driver is a module (src/daemon/libvirt_module.h) that vmsigd
# loads only when libvirt_uri is set:
#   - libvirt_uri = none: no libvirt library is mapped into vmsigd;
#   - libvirt_uri = test:///default (libvirt's built-in test driver, no
#     libvirtd): the module and libvirt are mapped, and nothing is refused;
#   - a vmsigd with no module beside it or in the install directory, or with
#     a foreign .so in its place, logs why ("libvirt driver module not
#     loaded: ...") and goes on serving: a stub VM from a trigger file shows
#     up in the roster.
set -euo pipefail

B=${VMSIG_BUILD_DIR:?VMSIG_BUILD_DIR: the build directory}
CTL=$B/src/tools/vmsigctl
D=$(mktemp -d /tmp/vmsig-lvmod.XXXXXX)
PID=
fail() {
        echo "FAIL: $*"
        echo "--- vmsigd log"; tail -20 "$D/vmsigd.log" || true
        exit 1
}
cleanup() {
        set +e
        [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID"
        rm -rf "$D"
}
trap cleanup EXIT

start() { # binary uri
        stop
        rm -rf "$D/vms" && mkdir -p "$D/vms"
        printf '[daemon]\nsocket = %s\ntrigger_dir = %s\naudit = file:%s\nlibvirt_uri = %s\n' \
                "$D/vmsigd.sock" "$D/vms" "$D/audit.log" "$2" >"$D/vmsigd.conf"
        "$1" -c "$D/vmsigd.conf" >"$D/vmsigd.log" 2>&1 &
        PID=$!
        for _ in $(seq 100); do
                grep -q "ready:" "$D/vmsigd.log" && return 0
                kill -0 "$PID" 2>/dev/null || fail "vmsigd ($1) exited at start"
                sleep 0.1
        done
        fail "vmsigd ($1) not ready within 10 s"
}
stop() {
        if [ -n "$PID" ]; then
                kill "$PID" && wait "$PID" || true
                PID=
        fi
}
maps_libvirt() { grep -E '/(libvirt\.so|vmsigd-libvirt\.so)' "/proc/$PID/maps" | awk '{print $6}' | sort -u; }
serves() {
        printf 'name=alpha\ndriver=stub\n' >"$D/vms/.alpha.new" && mv "$D/vms/.alpha.new" "$D/vms/alpha.vm"
        for _ in $(seq 100); do
                VMSIG_SOCKET=$D/vmsigd.sock "$CTL" list 2>/dev/null | grep -q alpha && return 0
                sleep 0.1
        done
        fail "the stub VM never showed up in the roster"
}

echo "# libvirt_uri = none"
start "$B/src/daemon/vmsigd" none
[ -z "$(maps_libvirt)" ] || fail "libvirt is mapped with libvirt_uri = none: $(maps_libvirt)"
serves
echo "ok: nothing of libvirt mapped; RSS $(awk '/VmRSS/ {print $2, $3}' "/proc/$PID/status")"

echo "# libvirt_uri = test:///default"
start "$B/src/daemon/vmsigd" test:///default
for _ in $(seq 50); do
        [ "$(maps_libvirt | wc -l)" -ge 2 ] && break
        sleep 0.1
done
maps_libvirt | grep -q "/vmsigd-libvirt.so$" || fail "the module is not mapped"
maps_libvirt | grep -q "/libvirt.so" || fail "libvirt is not mapped"
! grep -q "not loaded\|not started" "$D/vmsigd.log" || fail "the driver did not start"
serves
echo "ok: module and libvirt mapped; RSS $(awk '/VmRSS/ {print $2, $3}' "/proc/$PID/status")"

echo "# a vmsigd with no module beside it"
mkdir -p "$D/bin"
cp "$B/src/daemon/vmsigd" "$D/bin/vmsigd"
start "$D/bin/vmsigd" test:///default
grep -q "libvirt driver module not loaded: " "$D/vmsigd.log" || fail "no 'module not loaded' line"
serves
echo "ok: $(grep -o 'libvirt driver module not loaded: .*' "$D/vmsigd.log" | head -1)"

echo "# a foreign .so in the module's place"
cp "$(find "$B/src/core" -name 'libvmsig.so.*' | head -1)" "$D/bin/vmsigd-libvirt.so"
start "$D/bin/vmsigd" test:///default
grep -q "libvirt driver module not loaded: .*from another build" "$D/vmsigd.log" ||
        fail "a foreign module was not refused as from another build"
serves
echo "ok: $(grep -o 'libvirt driver module not loaded: .*' "$D/vmsigd.log" | head -1)"
stop
echo "PASS"
