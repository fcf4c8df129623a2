#!/usr/bin/env bash
# The newcomer's first command: install dependencies, build, then watch and
# drive a real QEMU guest through vmsigd:
#   a small guest (Debian's cloud kernel + a busybox initramfs, TCG) boots;
#   vmsigd starts with a private config; a trigger file announces the VM;
#   vmsigctl shows it in the roster, reads the guest kernel's banner through
#   the memctx, pauses and resumes it (STATUS events), and everything is
#   cleaned up. If QEMU cannot run here, it says why and runs the in-process
#   stub demo instead.
# Knobs: VMSIG_DEMO_NO_BUILD=1 (use an existing build), VMSIG_BUILD_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${VMSIG_BUILD_DIR:-build}

if [ -z "${VMSIG_DEMO_NO_BUILD:-}" ]; then
        scripts/deps.sh
        echo "== building vmsig into $B (build log: $B.log)"
        if ! { cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
                cmake --build "$B" -j"$(nproc)"; } >"$B.log" 2>&1; then
                tail -n 40 "$B.log" >&2
                echo "demo: the build failed; the whole log is $B.log" >&2
                exit 1
        fi
fi
CTL=$B/src/tools/vmsigctl

say() { printf '\n== %s\n' "$*"; }
fallback() {
        echo
        echo "demo: $1"
        echo "demo: running the in-process demo with stub VMs instead"
        cleanup_demo
        exec "$B/src/tools/vmsig-demo-inproc"
}

D=$(mktemp -d /tmp/vmsig-demo.XXXXXX)
VMSIGD_PID=
WATCH_PID=
cleanup_demo() {
        [ -n "$WATCH_PID" ] && kill "$WATCH_PID" 2>/dev/null && wait "$WATCH_PID" 2>/dev/null
        [ -n "$VMSIGD_PID" ] && kill "$VMSIGD_PID" 2>/dev/null && wait "$VMSIGD_PID" 2>/dev/null
        WATCH_PID= VMSIGD_PID=
        declare -F vmsig_cleanup >/dev/null && vmsig_cleanup
        rm -rf "$D"
}
trap cleanup_demo EXIT
trap 'cleanup_demo; exit 130' INT
trap 'cleanup_demo; exit 143' TERM

say "building the demo guest (cached after the first run)"
GUEST=$B/tests/vm/guest
command -v "${VMSIG_QEMU:-qemu-system-x86_64}" >/dev/null || fallback "${VMSIG_QEMU:-qemu-system-x86_64} not found (apt-get install qemu-system-x86)"
tests/vm/build-guest.sh "$GUEST" || fallback "cannot build the test guest (see the message above)"
export VMSIG_GUEST_DIR=$GUEST
# shellcheck disable=SC1091
. tests/vm/qemu.sh
trap cleanup_demo EXIT # qemu.sh installs its own; ours calls vmsig_cleanup too

say "booting it under QEMU (TCG)"
start_guest demo || fallback "QEMU could not start (see above)"
wait_for_serial VMSIG-GUEST-READY 120 demo || fallback "the guest did not boot within 120 s"
echo "guest up: QMP $GUEST_QMP, RAM $GUEST_SHM"

say "starting vmsigd with a private configuration"
mkdir -p "$D/vms"
cat >"$D/vmsigd.conf" <<CONF
[daemon]
socket = $D/vmsigd.sock
trigger_dir = $D/vms
audit = file:$D/audit.log

[uid:$(id -u)]
caps = all
CONF
"$B/src/daemon/vmsigd" -c "$D/vmsigd.conf" >"$D/vmsigd.log" 2>&1 &
VMSIGD_PID=$!
for _ in $(seq 100); do [ -S "$D/vmsigd.sock" ] && break; sleep 0.05; done
[ -S "$D/vmsigd.sock" ] || { cat "$D/vmsigd.log"; fallback "vmsigd did not start"; }
export VMSIG_SOCKET=$D/vmsigd.sock
cat "$D/vmsigd.log"

say "announcing the VM: a trigger file, written atomically (what a libvirt hook does)"
printf 'name=demo\ndriver=qemu\nqmp=%s\nram=%s\n' "$GUEST_QMP" "$GUEST_SHM" >"$D/vms/.demo.tmp"
mv "$D/vms/.demo.tmp" "$D/vms/demo.vm"
cat "$D/vms/demo.vm"

say "vmsigctl watch demo   (in the background: every event it gets)"
"$CTL" watch demo >"$D/watch.log" 2>&1 &
WATCH_PID=$!

say "vmsigctl list"
for _ in $(seq 200); do
        "$CTL" list 2>/dev/null | grep -q "demo.*memctx" && break
        sleep 0.1
done
"$CTL" list

say "vmsigctl read: the guest kernel's linux_banner, through the read-only memctx"
BANNER=$(awk '$3 == "linux_banner" { print $1; exit }' "$GUEST/System.map")
for _ in $(seq 300); do # the memctx appears once the kernel's page-table root is found
        "$CTL" read demo "0x$BANNER" 16 >/dev/null 2>&1 && break
        sleep 0.1
done
echo "\$ vmsigctl read demo 0x$BANNER 96"
"$CTL" read demo "0x$BANNER" 96

say "vmsigctl power: pause, then resume"
"$CTL" power demo pause
sleep 0.5
"$CTL" power demo resume
sleep 0.5

say "vmsigctl input: type into the guest (QMP input-send-event; uinput where /dev/uinput exists)"
"$CTL" input demo type "vmsig" && sleep 1
grep -a "VMSIG-INPUT" "$GUEST_SERIAL" | grep -a "type=1 " | head -10 || echo "(the guest printed no input events)"
echo "(the guest's own evdev reader printed these: key presses and releases, in order)"

say "what watch saw"
kill "$WATCH_PID" 2>/dev/null && wait "$WATCH_PID" 2>/dev/null || true
WATCH_PID=
cat "$D/watch.log"

say "the audit log (every destructive command and every denial)"
cat "$D/audit.log"

say "done: QEMU, vmsigd and their files are cleaned up on exit"
cat <<'NEXT'
Try next:
  make test                         the whole suite (what CI runs)
  vmsigctl --help, vmsigd --help    every command, with exit codes
  README.md "Try the daemon"        a stub VM you can drive by hand
  docs/architecture.md, docs/protocol.md
NEXT
