#!/bin/bash
# SPDX-License-Identifier: MIT
# Builds a guest on Debian's *stock* kernel (linux-image-amd64, not the cloud
# one build-guest.sh uses): the stock kernel has the modules the cloud kernel
# lacks (uinput, the bochs DRM driver).
#
#   build-stock-guest.sh OUTDIR
#
# OUTDIR gets: vmlinuz (a copy of /boot/vmlinuz-KVER), initrd.cpio.gz
# (busybox-static + modules) and guest.env (KERNEL=, INITRD=, KVER=, so
# tests/vm/qemu.sh can boot it with VMSIG_GUEST_DIR=OUTDIR).
#
# The initramfs carries uinput, evdev and bochs (with the DRM/TTM/fbdev helper
# modules it needs, resolved through modules.dep): under `-vga std` that gives
# /dev/fb0. /init mounts proc/sys/devtmpfs, loads the modules in dependency
# order, prints VMSIG-STOCK-READY on the console, then:
#   - if /test/run.sh exists: runs it (stdout/stderr to the console), prints
#     VMSIG-STOCK-RUN-EXIT rc=N and powers off (poweroff -f);
#   - else: keeps a shell on ttyS0.
# A test adds /test/run.sh and its own files by appending a second gzip'd
# newc cpio to initrd.cpio.gz (the kernel unpacks concatenated archives):
#   (cd DIR && find . | cpio -o -H newc) | gzip >extra.gz
#   cat OUTDIR/initrd.cpio.gz extra.gz >my-initrd.gz
#
# Cached: nothing is rebuilt while OUTDIR/.stamp is newer than the kernel,
# modules.dep, busybox and this script. No network needed.
set -euo pipefail

die() {
        echo "build-stock-guest: $*" >&2
        exit 1
}

[ $# -eq 1 ] || die "usage: $0 OUTDIR"
OUT=$1
SELF=$(readlink -f "$0")

KERNEL=${VMSIG_STOCK_KERNEL:-}
if [ -z "$KERNEL" ]; then
        KERNEL=$(for k in /boot/vmlinuz-*-amd64; do
                case $k in *-cloud-amd64 | '/boot/vmlinuz-*-amd64') ;; *) echo "$k" ;; esac
        done | sort -V | tail -n 1)
fi
[ -n "$KERNEL" ] || die "no stock /boot/vmlinuz-*-amd64: install the Debian package 'linux-image-amd64'"
[ -r "$KERNEL" ] || die "cannot read $KERNEL"
KVER=${KERNEL##*/vmlinuz-}
MODROOT=/lib/modules/$KVER
[ -r "$MODROOT/modules.dep" ] || die "no $MODROOT/modules.dep: install 'linux-image-$KVER'"
[ -e /bin/busybox ] || die "missing /bin/busybox: install the Debian package 'busybox-static'"
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
        die "/bin/busybox is not the static build: install the Debian package 'busybox-static'"
fi
command -v cpio >/dev/null || die "cpio not found: install the Debian package 'cpio'"
command -v gzip >/dev/null || die "gzip not found: install the Debian package 'gzip'"

mkdir -p "$OUT"
OUT=$(readlink -f "$OUT")
STAMP=$OUT/.stamp

up_to_date() {
        [ -f "$STAMP" ] && [ -f "$OUT/guest.env" ] && [ -f "$OUT/initrd.cpio.gz" ] && [ -f "$OUT/vmlinuz" ] || return 1
        grep -qx "KVER=$KVER" "$OUT/guest.env" || return 1
        for f in "$KERNEL" "$MODROOT/modules.dep" /bin/busybox "$SELF"; do
                [ "$STAMP" -nt "$f" ] || return 1
        done
}

print_paths() {
        echo "kernel: $OUT/vmlinuz ($KERNEL)"
        echo "initrd: $OUT/initrd.cpio.gz"
        echo "modules: $(tr '\n' ' ' <"$OUT/modules.order")"
}

if up_to_date; then
        print_paths
        exit 0
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vmsig-stock-guest.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ROOT=$WORK/root
mkdir -p "$ROOT"/{bin,sbin,dev,proc,sys,tmp,run,etc,root,lib/vmsig-modules}
cp /bin/busybox "$ROOT/bin/busybox"

# ---- modules: the wanted ones and their dependencies, dependencies first ----
declare -A SEEN=()
ORDER=()
dep_line() { # RELPATH -> its dependency list from modules.dep
        awk -v m="$1:" '$1 == m { $1 = ""; print; exit }' "$MODROOT/modules.dep"
}
resolve() { # RELPATH
        local rel=$1 d
        [ -n "${SEEN[$rel]:-}" ] && return 0
        SEEN[$rel]=1
        for d in $(dep_line "$rel"); do
                resolve "$d"
        done
        ORDER+=("$rel")
}
for want in uinput evdev bochs; do
        rel=$(awk -F: -v w="$want" '{ n = $1; sub(/.*\//, "", n); sub(/\.ko(\.[a-z]+)?$/, "", n);
                gsub(/-/, "_", n); if (n == w) { print $1; exit } }' "$MODROOT/modules.dep")
        if [ -z "$rel" ]; then
                grep -q "/$want.ko" "$MODROOT/modules.builtin" 2>/dev/null && continue
                die "no module $want in $MODROOT (is $KERNEL the stock kernel?)"
        fi
        resolve "$rel"
done
: >"$WORK/modules.order"
for rel in "${ORDER[@]}"; do
        base=${rel##*/}
        name=${base%%.ko*}
        src=$MODROOT/$rel
        case $rel in
        *.ko) cp "$src" "$ROOT/lib/vmsig-modules/$name.ko" ;;
        *.ko.xz) xz -dc "$src" >"$ROOT/lib/vmsig-modules/$name.ko" || die "cannot unpack $src (xz-utils)" ;;
        *.ko.zst) zstd -qdc "$src" >"$ROOT/lib/vmsig-modules/$name.ko" || die "cannot unpack $src (zstd)" ;;
        *.ko.gz) gzip -dc "$src" >"$ROOT/lib/vmsig-modules/$name.ko" ;;
        *) die "unknown module format: $src" ;;
        esac
        echo "$name" >>"$WORK/modules.order"
done
cp "$WORK/modules.order" "$ROOT/etc/vmsig-modules.order"

cat >"$ROOT/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run /tmp
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /dev/shm
while read -r m; do
        insmod "/lib/vmsig-modules/$m.ko" || echo "VMSIG-STOCK-MODULE-FAILED $m"
done </etc/vmsig-modules.order
echo "VMSIG-STOCK-READY $(uname -r)"
if [ -f /test/run.sh ]; then
        rc=0
        sh /test/run.sh </dev/null >/dev/console 2>&1 || rc=$?
        echo "VMSIG-STOCK-RUN-EXIT rc=$rc"
        sync
        poweroff -f
fi
while true; do
        setsid cttyhack sh -l </dev/ttyS0 >/dev/ttyS0 2>&1 || sh </dev/ttyS0 >/dev/ttyS0 2>&1
        sleep 1
done
EOF
chmod 0755 "$ROOT/init"
echo 'root:x:0:0:root:/root:/bin/sh' >"$ROOT/etc/passwd"
echo 'root:x:0:' >"$ROOT/etc/group"

(cd "$ROOT" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner=0:0 --quiet) |
        gzip -6n >"$WORK/initrd.cpio.gz"
[ "$(gzip -dc "$WORK/initrd.cpio.gz" | cpio -t --quiet 2>/dev/null | grep -c '^init$')" = 1 ] ||
        die "initramfs has no /init"
cp -f "$KERNEL" "$WORK/vmlinuz"
mv -f "$WORK/vmlinuz" "$OUT/vmlinuz"
mv -f "$WORK/initrd.cpio.gz" "$OUT/initrd.cpio.gz"
mv -f "$WORK/modules.order" "$OUT/modules.order"
cat >"$OUT/guest.env" <<EOF
KERNEL=$OUT/vmlinuz
INITRD=$OUT/initrd.cpio.gz
KVER=$KVER
EOF
touch "$STAMP"
print_paths
