#!/bin/bash
# SPDX-License-Identifier: MIT
# vmsigd's libvirt driver against a real libvirtd (docs/libvirt.md).
#
# Runs in a private mount namespace: libvirtd gets its own /etc/libvirt (a
# copy, with memory_backing_dir on a private tmpfs), /run/libvirt,
# /var/lib/libvirt and /var/log/libvirt, so nothing of the host's libvirt is
# touched and everything goes away with the namespace. The test starts
# virtlogd and libvirtd itself (no systemd), defines no network, and boots
# TCG domains of the test guest (tests/vm/build-guest.sh) as transient
# domains. Checks:
#   - a domain running before vmsigd starts, opted in by metadata only (no
#     hook, no <qemu:commandline>), with its RAM file under a
#     memory_backing_dir on tmpfs: in `vmsigctl list`, banner read through
#     its memctx;
#   - virsh suspend/resume show as STATUS; vmsigctl power pause shows in
#     virsh domstate;
#   - typed input reaches the guest;
#   - restarting libvirtd while it runs loses nothing;
#   - virsh destroy removes it from the roster;
#   - a memfd-backed domain started while vmsigd runs gets a working memctx;
#   - a domain without the opt-in is left alone: not served, not tainted;
#     `virsh metadata --live` then opts it in and out while it runs;
#   - vmsigd started while libvirtd is down logs it, keeps serving, and
#     serves the opted-in domains once libvirtd is back.
# Needs root (libvirtd, namespaces). Exit 77 where that cannot exist.
set -euo pipefail

skip() {
        echo "skipped: $*"
        exit 77
}

[ "$(id -u)" = 0 ] || skip "needs root (libvirtd, mount namespace)"
for p in libvirtd virtlogd virsh unshare; do
        command -v "$p" >/dev/null || PATH=$PATH:/usr/sbin command -v "$p" >/dev/null ||
                skip "$p not installed (libvirt-daemon-system, libvirt-clients)"
done
export PATH=$PATH:/usr/sbin

if [ -z "${VMSIG_LV_NS:-}" ]; then
        unshare -m --propagation private true 2>/dev/null || skip "cannot make a mount namespace here"
        exec env VMSIG_LV_NS=1 unshare -m --propagation private "$0" "$@"
fi

B=${VMSIG_BUILD_DIR:?VMSIG_BUILD_DIR: the build directory}
GUEST=${VMSIG_GUEST_DIR:?VMSIG_GUEST_DIR: tests/vm/build-guest.sh output}
VMSIGD=$B/src/daemon/vmsigd
CTL=$B/src/tools/vmsigctl
# shellcheck disable=SC1091
. "$GUEST/guest.env"
T0=$(date +%s)
say() { echo "# [$(($(date +%s) - T0))s] $*"; }
fail() {
        echo "FAIL: $*"
        echo "--- vmsigctl list"; "$CTL" list 2>&1 | head -20 || true
        echo "--- vmsigd log"; tail -40 "$D/vmsigd.log" 2>/dev/null || true
        exit 1
}

D=$(mktemp -d /tmp/vmsig-lv.XXXXXX)
chmod 755 "$D"
PIDS=()
cleanup() {
        set +e
        for dom in $(virsh -q list --name 2>/dev/null); do virsh -q destroy "$dom" >/dev/null 2>&1; done
        [ -n "${VMSIGD_PID:-}" ] && kill "$VMSIGD_PID" 2>/dev/null && wait "$VMSIGD_PID" 2>/dev/null
        [ -n "${WATCH_PID:-}" ] && kill "$WATCH_PID" 2>/dev/null
        for f in "$D/libvirtd.pid" "$D/virtlogd.pid"; do
                [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null
        done
        for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
        sleep 0.2
        # QEMU of our domains, should libvirtd have died before destroying them
        pkill_ours() { for p in $(pgrep -f "guest=vmsig-lv-$$"); do kill -9 "$p"; done; }
        pkill_ours 2>/dev/null
        umount -l /run/libvirt /var/lib/libvirt /var/log/libvirt /etc/libvirt "$D/ram" 2>/dev/null
        rm -rf "$D"
}
trap cleanup EXIT

# ---- a private libvirt ----
say "private libvirt: config copy, tmpfs state, memory_backing_dir on tmpfs"
cp -a /etc/libvirt "$D/etc"
mkdir -p "$D/ram" /run/libvirt
mount -t tmpfs -o mode=0755 tmpfs "$D/ram"
cat >>"$D/etc/qemu.conf" <<CONF
memory_backing_dir = "$D/ram"
security_driver = "none"
CONF
# listen on nothing but the unix socket
mount --bind "$D/etc" /etc/libvirt
mount -t tmpfs -o mode=0755 tmpfs /run/libvirt
mount -t tmpfs -o mode=0755 tmpfs /var/lib/libvirt
mount -t tmpfs -o mode=0755 tmpfs /var/log/libvirt
mkdir -p /var/lib/libvirt/qemu /var/log/libvirt/qemu
cp "$KERNEL" "$D/vmlinuz"
cp "$INITRD" "$D/initrd.gz"
chmod 644 "$D/vmlinuz" "$D/initrd.gz"

start_libvirtd() {
        libvirtd -d -p "$D/libvirtd.pid"
        for _ in $(seq 200); do
                virsh -q version >/dev/null 2>&1 && return 0
                sleep 0.1
        done
        fail "libvirtd did not answer within 20 s"
}
virtlogd -d -p "$D/virtlogd.pid"
start_libvirtd
say "libvirtd up: $(virsh -q version | grep -i 'running hypervisor' | tr -s ' ')"

# ---- domains ----
PFX=vmsig-lv-$$
# $1 name, $2 <memoryBacking> body, $3 metadata or "", $4 serial log
domain_xml() {
        cat <<XML
<domain type='qemu'>
  <name>$1</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  $3
  <memoryBacking>$2</memoryBacking>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$D/vmlinuz</kernel>
    <initrd>$D/initrd.gz</initrd>
    <cmdline>console=ttyS0 nokaslr panic=-1</cmdline>
  </os>
  <on_reboot>restart</on_reboot>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    <serial type='file'><source path='$4'/><target port='0'/></serial>
    <input type='keyboard' bus='ps2'/>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
XML
}
OPTIN="<metadata><vmsig:vm xmlns:vmsig='https://vmsig.dev/ns/1'/></metadata>"
FILE_RAM="<source type='file'/><access mode='shared'/>"
MEMFD_RAM="<source type='memfd'/><access mode='shared'/>"

wait_serial() { # file marker seconds
        local end=$(($(date +%s) + $3))
        while [ "$(date +%s)" -lt "$end" ]; do
                grep -aq "$2" "$1" 2>/dev/null && return 0
                sleep 0.2
        done
        return 1
}
wait_cmd() { # seconds command...
        local end=$(($(date +%s) + $1))
        shift
        while [ "$(date +%s)" -lt "$end" ]; do
                "$@" >/dev/null 2>&1 && return 0
                sleep 0.2
        done
        return 1
}
in_list() { "$CTL" list 2>/dev/null | awk -v n="$1" '$2 == n { f = 1 } END { exit !f }'; }
not_in_list() { "$CTL" list >/dev/null 2>&1 && ! in_list "$1"; }
BANNER=0x$(awk '$3 == "linux_banner" { print $1; exit }' "$GUEST/System.map")
banner_ok() { "$CTL" read "$1" "$BANNER" 64 2>/dev/null | grep -aq "Linux version"; }

A=$PFX-a
say "domain $A (file RAM under memory_backing_dir, opted in) starts before vmsigd"
domain_xml "$A" "$FILE_RAM" "$OPTIN" "$D/a.serial" >"$D/a.xml"
virsh -q create "$D/a.xml" >/dev/null || fail "virsh create $A"

# ---- vmsigd ----
mkdir -p "$D/vms"
cat >"$D/vmsigd.conf" <<CONF
[daemon]
socket = $D/vmsigd.sock
trigger_dir = $D/vms
audit = file:$D/audit.log
libvirt_uri = qemu:///system
CONF
export VMSIG_SOCKET=$D/vmsigd.sock
"$VMSIGD" -c "$D/vmsigd.conf" >"$D/vmsigd.log" 2>&1 &
VMSIGD_PID=$!
wait_cmd 10 test -S "$D/vmsigd.sock" || fail "vmsigd did not start"

wait_cmd 30 in_list "$A" || fail "$A not in vmsigctl list"
say "picked up the running domain: $("$CTL" list | grep "$A" | tr -s ' ')"
grep -q "qemu:commandline" <(virsh dumpxml "$A") && fail "$A has a <qemu:commandline>"
wait_serial "$D/a.serial" VMSIG-GUEST-READY 90 || fail "$A did not boot"
wait_cmd 60 banner_ok "$A" || fail "$A: no banner through the memctx: $("$CTL" read "$A" "$BANNER" 64 2>&1)"
say "banner through the memctx: $("$CTL" read "$A" "$BANNER" 64 | grep -ao 'Linux version [^ ]*')"

"$CTL" watch "$A" >"$D/watch.log" 2>&1 &
WATCH_PID=$!
sleep 0.5
virsh -q suspend "$A" >/dev/null
wait_cmd 10 grep -q "run_state=paused" "$D/watch.log" || fail "virsh suspend: no STATUS paused"
virsh -q resume "$A" >/dev/null
wait_cmd 10 grep -q "run_state=running" "$D/watch.log" || fail "virsh resume: no STATUS running"
say "virsh suspend/resume seen as STATUS"
"$CTL" power "$A" pause >/dev/null || fail "vmsigctl power pause"
wait_cmd 10 bash -c "virsh domstate '$A' | grep -q paused" || fail "power pause not in virsh domstate"
"$CTL" power "$A" resume >/dev/null || fail "vmsigctl power resume"
wait_cmd 10 bash -c "virsh domstate '$A' | grep -q running" || fail "power resume not in virsh domstate"
say "vmsigctl power pause/resume seen by virsh domstate"

wait_serial "$D/a.serial" VMSIG-INPUT-READY 30 || fail "$A: guest input reader not up"
"$CTL" input "$A" type "vq" >/dev/null || fail "vmsigctl input type"
# KEY_V = 47, KEY_Q = 16: press events (type 1, value 1)
wait_serial "$D/a.serial" "type=1 code=47 value=1" 10 || fail "typed input did not reach the guest"
wait_serial "$D/a.serial" "type=1 code=16 value=1" 10 || fail "typed input did not reach the guest"
say "typed input reached the guest"

say "restarting libvirtd while $A runs"
LVPID=$(cat "$D/libvirtd.pid")
kill "$LVPID"
wait_cmd 20 bash -c "! kill -0 $LVPID" || fail "libvirtd did not stop"
start_libvirtd
wait_cmd 30 bash -c "[ \$(grep -c 'libvirt driver: connected to' '$D/vmsigd.log') -ge 2 ]" ||
        fail "vmsigd did not reconnect to libvirtd"
in_list "$A" || fail "$A left the roster across the libvirtd restart"
banner_ok "$A" || fail "$A: memctx lost across the libvirtd restart"
"$CTL" power "$A" pause >/dev/null || fail "power pause after the libvirtd restart"
wait_cmd 10 bash -c "virsh domstate '$A' | grep -q paused" || fail "power pause after restart not in domstate"
"$CTL" power "$A" resume >/dev/null
say "nothing lost across the libvirtd restart"

virsh -q destroy "$A" >/dev/null
wait_cmd 10 not_in_list "$A" || fail "virsh destroy: $A still in the roster"
say "virsh destroy removed it from the roster"

M=$PFX-m
C=$PFX-c
say "domain $M (memfd RAM, opted in) and $C (shared file RAM, no opt-in) start while vmsigd runs"
domain_xml "$M" "$MEMFD_RAM" "$OPTIN" "$D/m.serial" >"$D/m.xml"
domain_xml "$C" "$FILE_RAM" "" "$D/c.serial" >"$D/c.xml"
virsh -q create "$D/m.xml" >/dev/null || fail "virsh create $M"
virsh -q create "$D/c.xml" >/dev/null || fail "virsh create $C"
wait_cmd 30 in_list "$M" || fail "$M not in vmsigctl list"
wait_serial "$D/m.serial" VMSIG-GUEST-READY 120 || fail "$M did not boot"
wait_cmd 60 banner_ok "$M" || fail "$M (memfd): no banner: $("$CTL" read "$M" "$BANNER" 64 2>&1)"
say "memfd domain: banner through the memctx"
not_in_list "$C" || fail "$C (no opt-in) is served"
grep -q "tainted" "/var/log/libvirt/qemu/$C.log" && fail "$C is tainted: $(grep tainted "/var/log/libvirt/qemu/$C.log")"
grep -q "$C" "$D/vmsigd.log" && fail "vmsigd mentions $C"
say "domain without the opt-in left alone, untainted"
virsh -q metadata "$C" https://vmsig.dev/ns/1 --key vmsig --set '<vm/>' --live >/dev/null ||
        fail "virsh metadata --set"
wait_cmd 20 in_list "$C" || fail "$C: opting in with virsh metadata --live did not serve it"
virsh -q metadata "$C" https://vmsig.dev/ns/1 --remove --live >/dev/null || fail "virsh metadata --remove"
wait_cmd 20 not_in_list "$C" || fail "$C: removing the metadata did not take it off the roster"
say "virsh metadata --set/--remove --live opts a running domain in and out"
grep "tainted" "/var/log/libvirt/qemu/$M.log" | sed 's/^/# opted-in domain: /' || true
stop_vmsigd() {
        kill "$VMSIGD_PID"
        wait "$VMSIGD_PID" || fail "vmsigd exited with status $? on SIGTERM"
        VMSIGD_PID=
        grep -q "Sanitizer" "$D/vmsigd.log" && fail "vmsigd: sanitizer report"
        [ -z "$(ls -A "$D/libvirt" 2>/dev/null)" ] || fail "proxy sockets left behind: $(ls "$D/libvirt")"
}
stop_vmsigd

say "vmsigd starting while libvirtd is down: it keeps running and connects once libvirtd is back"
LVPID=$(cat "$D/libvirtd.pid")
kill "$LVPID"
wait_cmd 20 bash -c "! kill -0 $LVPID" || fail "libvirtd did not stop"
mv "$D/vmsigd.log" "$D/vmsigd.1.log"
"$VMSIGD" -c "$D/vmsigd.conf" >"$D/vmsigd.log" 2>&1 &
VMSIGD_PID=$!
wait_cmd 10 grep -q "libvirt driver: cannot connect to qemu:///system" "$D/vmsigd.log" ||
        fail "no log line saying libvirt cannot be reached"
"$CTL" list >/dev/null || fail "vmsigd does not serve while libvirt is unreachable"
start_libvirtd
wait_cmd 30 in_list "$M" || fail "$M not served once libvirtd is reachable"
wait_cmd 30 banner_ok "$M" || fail "$M: no banner after the late connect"
not_in_list "$C" || fail "$C (opted out) is served"
say "$(grep -m1 "cannot connect" "$D/vmsigd.log" | cut -c1-110)..."
stop_vmsigd
say "done"
