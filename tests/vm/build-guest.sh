#!/bin/bash
# SPDX-License-Identifier: MIT
# Builds the vmsig test guest from Debian packages installed on this machine:
# the cloud kernel from /boot and a busybox-static initramfs whose /init prints
# VMSIG-GUEST-READY and /proc/version on ttyS0, then runs a shell there.
#
#   build-guest.sh OUTDIR
#
# OUTDIR gets: initrd.gz, System.map, guest.env (KERNEL=, INITRD=, SYSTEM_MAP=,
# KVER=, SYSTEM_MAP_SOURCE=). Cached: nothing is rebuilt while OUTDIR/.stamp
# is newer than the kernel, busybox and this script. No network needed.
#
# Input (additive): where the host gcc can link statically, the initramfs
# also carries /bin/vmsig-input-reader (tests/vm/guest_input_reader.c) and
# the kernel modules for evdev and a virtio tablet (from
# /lib/modules/KVER); after the ready marker and /proc/version, /init loads
# them in the background and the reader prints every input event as
# "VMSIG-INPUT ev=N type=T code=C value=V" on ttyS0. guest.env then has
# INPUT_READER=1 (else 0, with the reason on stderr).
#
# Debian's /boot/System.map is a placeholder ("The real System.map is in the
# linux-image-<version>-dbg package"). Where the -dbg package is not installed,
# the map is generated once from the guest's own /proc/kallsyms, booted with
# nokaslr under TCG (about 20 s), which gives the same addresses as a nokaslr
# boot of the same kernel.
set -euo pipefail

die() {
        echo "build-guest: $*" >&2
        exit 1
}
need_pkg() { # FILE PACKAGE
        [ -e "$1" ] || die "missing $1: install the Debian package '$2' (apt-get install $2)"
}

[ $# -eq 1 ] || die "usage: $0 OUTDIR"
OUT=$1
SELF=$(readlink -f "$0")

KERNEL=${VMSIG_GUEST_KERNEL:-}
if [ -z "$KERNEL" ]; then
        KERNEL=$(ls -1 /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n 1 || true)
fi
[ -n "$KERNEL" ] || die "no /boot/vmlinuz-*-cloud-amd64: install the Debian package 'linux-image-cloud-amd64'"
[ -r "$KERNEL" ] || die "cannot read $KERNEL"
KVER=${KERNEL##*/vmlinuz-}
need_pkg /bin/busybox busybox-static
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
        die "/bin/busybox is not the static build: install the Debian package 'busybox-static'"
fi
command -v cpio >/dev/null || die "cpio not found: install the Debian package 'cpio'"
command -v gzip >/dev/null || die "gzip not found: install the Debian package 'gzip'"

mkdir -p "$OUT"
OUT=$(readlink -f "$OUT")
STAMP=$OUT/.stamp
READER_SRC=$(dirname "$SELF")/guest_input_reader.c
MWTARGET_SRC=$(dirname "$SELF")/guest_memwrite_target.c

up_to_date() {
        [ -f "$STAMP" ] && [ -f "$OUT/guest.env" ] && [ -f "$OUT/initrd.gz" ] && [ -f "$OUT/System.map" ] || return 1
        grep -qx "KERNEL=$KERNEL" "$OUT/guest.env" || return 1
        for f in "$KERNEL" /bin/busybox "$SELF" "$READER_SRC" "$MWTARGET_SRC"; do
                [ "$STAMP" -nt "$f" ] || return 1
        done
}

print_paths() {
        # shellcheck disable=SC1091
        . "$OUT/guest.env"
        echo "kernel:     $KERNEL"
        echo "initrd:     $INITRD"
        echo "System.map: $SYSTEM_MAP ($SYSTEM_MAP_SOURCE)"
}

if up_to_date; then
        print_paths
        exit 0
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vmsig-guest-build.XXXXXX")
KSYM_SHM=""
QPID=""
cleanup() {
        [ -n "$QPID" ] && kill -KILL "$QPID" 2>/dev/null || true
        [ -n "$KSYM_SHM" ] && rm -f "$KSYM_SHM"
        rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- initramfs ----
ROOT=$WORK/root
mkdir -p "$ROOT"/{bin,sbin,dev,proc,sys,tmp,etc,root}
cp /bin/busybox "$ROOT/bin/busybox"
cat >"$ROOT/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
if grep -q vmsig.kallsyms /proc/cmdline; then
        # build-guest.sh: dump the symbol table on the second serial port, then stop.
        cat /proc/kallsyms >/dev/ttyS1
        echo VMSIG-KALLSYMS-DONE >/dev/ttyS0
        poweroff -f
fi
if grep -q vmsig.ktext /proc/cmdline; then
        # tests/vm/test_kaslr_real: where this boot's kernel image starts.
        echo "VMSIG-KTEXT $(grep ' _text$' /proc/kallsyms)"
fi
echo VMSIG-GUEST-READY
cat /proc/version
if [ -x /bin/vmsig-input-reader ]; then
        # Input for tests/vm/test_input_real: modules (in dependency order),
        # then the event printer, in the background so nothing above waits.
        (
                for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci \
                        virtio_input evdev; do
                        [ -f /lib/vmsig-modules/$m.ko ] && insmod /lib/vmsig-modules/$m.ko 2>/dev/null
                done
                exec /bin/vmsig-input-reader
        ) </dev/null >/dev/console 2>&1 &
fi
# MEMWRITE, seen from inside (tests/vm/test_memwrite_real): the kernel's own
# /proc/version, and a process printing a buffer of its own.
( while true; do echo "VMSIG-PROC-VERSION $(cat /proc/version)"; sleep 1; done ) </dev/null >/dev/console 2>&1 &
[ -x /bin/vmsig-mw-target ] && /bin/vmsig-mw-target </dev/null >/dev/console 2>&1 &
# The shell loop keeps the guest alive and usable on the console.
while true; do
        setsid cttyhack sh -l </dev/ttyS0 >/dev/ttyS0 2>&1 || sh </dev/ttyS0 >/dev/ttyS0 2>&1
        sleep 1
done
EOF
chmod 0755 "$ROOT/init"
echo 'root:x:0:0:root:/root:/bin/sh' >"$ROOT/etc/passwd"
INPUT_READER=0
if [ -r "$READER_SRC" ] && command -v gcc >/dev/null &&
        gcc -static -O2 -o "$ROOT/bin/vmsig-input-reader" "$READER_SRC" 2>"$WORK/reader.err"; then
        mkdir -p "$ROOT/lib/vmsig-modules"
        MODDIR=/lib/modules/$KVER/kernel/drivers
        INPUT_READER=1
        for m in virtio/virtio_ring virtio/virtio virtio/virtio_pci_legacy_dev virtio/virtio_pci_modern_dev \
                virtio/virtio_pci virtio/virtio_input input/evdev; do
                base=${m##*/}
                if [ -f "$MODDIR/$m.ko" ]; then
                        cp "$MODDIR/$m.ko" "$ROOT/lib/vmsig-modules/$base.ko"
                elif [ -f "$MODDIR/$m.ko.xz" ] && command -v xz >/dev/null; then
                        xz -dc "$MODDIR/$m.ko.xz" >"$ROOT/lib/vmsig-modules/$base.ko"
                elif [ -f "$MODDIR/$m.ko.zst" ] && command -v zstd >/dev/null; then
                        zstd -qdc "$MODDIR/$m.ko.zst" >"$ROOT/lib/vmsig-modules/$base.ko"
                elif ! grep -q "/$base.ko" "/lib/modules/$KVER/modules.builtin" 2>/dev/null; then
                        echo "build-guest: no module $m for $KVER (install linux-image-$KVER): guest input disabled" >&2
                        INPUT_READER=0
                fi
        done
        [ "$INPUT_READER" = 1 ] || rm -rf "$ROOT/bin/vmsig-input-reader" "$ROOT/lib/vmsig-modules"
else
        echo "build-guest: cannot build the guest input reader (gcc -static with libc6-dev): guest input disabled" >&2
        [ -s "$WORK/reader.err" ] && head -n 5 "$WORK/reader.err" >&2
        rm -f "$ROOT/bin/vmsig-input-reader"
fi
MW_TARGET=0
if [ -r "$MWTARGET_SRC" ] && command -v gcc >/dev/null &&
        gcc -static -O2 -o "$ROOT/bin/vmsig-mw-target" "$MWTARGET_SRC" 2>"$WORK/mwtarget.err"; then
        MW_TARGET=1
else
        echo "build-guest: cannot build the MEMWRITE target (gcc -static with libc6-dev): user-process MEMWRITE tests disabled" >&2
fi
(cd "$ROOT" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner=0:0 --quiet) | gzip -9n >"$WORK/initrd.gz"
# An empty archive would boot into a kernel panic with no hint why.
[ "$(gzip -dc "$WORK/initrd.gz" | cpio -t --quiet 2>/dev/null | grep -c '^init$')" = 1 ] || die "initramfs has no /init"
mv -f "$WORK/initrd.gz" "$OUT/initrd.gz"

# ---- System.map ----
MAP_SRC=""
for cand in "/usr/lib/debug/boot/System.map-$KVER" "/boot/System.map-$KVER"; do
        # The placeholder is one line; a real map has ~100k.
        if [ -r "$cand" ] && [ "$(head -n 3 "$cand" | wc -l)" -ge 3 ]; then
                cp -f "$cand" "$OUT/System.map"
                MAP_SRC="$cand"
                break
        fi
done
if [ -z "$MAP_SRC" ]; then
        command -v qemu-system-x86_64 >/dev/null ||
                die "no real System.map for $KVER and no QEMU to derive one: install 'linux-image-$KVER-dbg' or 'qemu-system-x86'"
        echo "build-guest: /boot/System.map-$KVER is Debian's placeholder (the real one is in 'linux-image-$KVER-dbg');" \
                "deriving it from the guest's /proc/kallsyms (nokaslr)" >&2
        KSYM_SHM=/dev/shm/vmsig-guest-build-$$-$RANDOM
        : >"$WORK/console.log"
        timeout 300 qemu-system-x86_64 -accel tcg -m 256M -smp 1 -no-reboot -display none -nodefaults \
                -object "memory-backend-file,id=ram0,size=256M,mem-path=$KSYM_SHM,share=on" \
                -machine q35,memory-backend=ram0 -kernel "$KERNEL" -initrd "$OUT/initrd.gz" \
                -append "console=ttyS0 nokaslr panic=-1 quiet vmsig.kallsyms" \
                -serial "file:$WORK/console.log" -serial "file:$WORK/kallsyms" &
        QPID=$!
        wait "$QPID" || true
        QPID=""
        rm -f "$KSYM_SHM"
        KSYM_SHM=""
        grep -q VMSIG-KALLSYMS-DONE "$WORK/console.log" ||
                die "kallsyms boot failed; console log: $(tail -c 2000 "$WORK/console.log")"
        tr -d '\r' <"$WORK/kallsyms" | awk 'NF == 3 && $1 != "0000000000000000"' | LC_ALL=C sort -s -k1,1 >"$WORK/System.map"
        [ "$(wc -l <"$WORK/System.map")" -gt 10000 ] || die "kallsyms dump looks truncated"
        mv -f "$WORK/System.map" "$OUT/System.map"
        MAP_SRC="guest /proc/kallsyms, nokaslr"
fi

cat >"$OUT/guest.env" <<EOF
KERNEL=$KERNEL
KVER=$KVER
INITRD=$OUT/initrd.gz
SYSTEM_MAP=$OUT/System.map
SYSTEM_MAP_SOURCE="$MAP_SRC"
INPUT_READER=$INPUT_READER
MW_TARGET=$MW_TARGET
EOF
touch "$STAMP"
print_paths
