#!/bin/bash
# SPDX-License-Identifier: MIT
# A test guest that runs vgpu-stream: the base guest's initrd plus an
# appended gzip'd newc cpio (the kernel unpacks concatenated archives, a
# later file replacing an earlier one of the same name).
#
#   make-initrd.sh pattern GUEST_DIR VGPU_STREAM OUTDIR
#       GUEST_DIR from tests/vm/build-guest.sh. A new /init runs
#       `vgpu-stream --source pattern` in a loop (each run ends after
#       VGPU_FRAMES frames, default 300, so the host sees restarts with new
#       nonces) and prints VGPU-RUN N / VGPU-EXIT N on the console.
#       VGPU_WIDTH, VGPU_HEIGHT, VGPU_FPS: its geometry and rate (default
#       320x200 at 30; bench/frames uses 1920x1080).
#   make-initrd.sh fb GUEST_DIR VGPU_STREAM OUTDIR
#       GUEST_DIR from tests/vm/build-stock-guest.sh. /test/run.sh draws a
#       still test picture on /dev/fb0, runs `vgpu-stream --source fb`, and
#       prints VGPU-FB-READY once the screen is still.
# OUTDIR gets initrd.gz and guest.env (KERNEL=, INITRD=) for vm_guest.h.
set -euo pipefail

die() {
        echo "make-initrd: $*" >&2
        exit 1
}
[ $# -eq 4 ] || die "usage: $0 pattern|fb GUEST_DIR VGPU_STREAM OUTDIR"
mode=$1 guest=$2 producer=$3 out=$4
[ -r "$guest/guest.env" ] || die "$guest/guest.env: not found (build the guest first)"
[ -x "$producer" ] || die "$producer: not an executable"
# shellcheck disable=SC1091
. "$guest/guest.env"
[ -r "${INITRD:-}" ] && [ -r "${KERNEL:-}" ] || die "$guest/guest.env does not name a readable KERNEL and INITRD"
mkdir -p "$out"
root=$(mktemp -d "$out/root.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/test"
cp "$producer" "$root/bin/vgpu-stream"
case $mode in
pattern)
        cat >"$root/init" <<EOI
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo VMSIG-GUEST-READY
n=0
while true; do
        n=\$((n + 1))
        echo "VGPU-RUN \$n"
        /bin/vgpu-stream --source pattern --fps ${VGPU_FPS:-30} --width ${VGPU_WIDTH:-320} --height ${VGPU_HEIGHT:-200} --frames ${VGPU_FRAMES:-300} --quiet </dev/null
        echo "VGPU-EXIT \$n rc=\$?"
done
EOI
        chmod 0755 "$root/init"
        ;;
fb)
        cat >"$root/test/run.sh" <<'EOI'
#!/bin/sh
# A still picture of random pixels: the console is unbound from fb0 first
# (no cursor, no text lands on it), then nothing draws there any more.
for i in 1 2 3 4 5 6 7 8 9 10; do [ -e /dev/fb0 ] && break; sleep 1; done
[ -e /dev/fb0 ] || { echo "VGPU-FB-NONE"; exit 1; }
cat /proc/fb
echo 0 >/sys/class/graphics/fbcon/cursor_blink 2>/dev/null
for v in /sys/class/vtconsole/vtcon*/bind; do echo 0 >"$v" 2>/dev/null; done
cat /dev/urandom >/dev/fb0 2>/dev/null
/bin/vgpu-stream --source fb --fps 10 --quiet </dev/null &
sleep 2
echo VGPU-FB-READY
sleep 600
EOI
        chmod 0755 "$root/test/run.sh"
        ;;
*) die "unknown mode '$mode'" ;;
esac
(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner=0:0 --quiet) | gzip -1n >"$out/extra.gz"
cat "$INITRD" "$out/extra.gz" >"$out/initrd.gz"
rm -f "$out/extra.gz"
printf 'KERNEL=%s\nINITRD=%s\n' "$KERNEL" "$out/initrd.gz" >"$out/guest.env"
