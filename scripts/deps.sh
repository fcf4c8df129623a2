#!/usr/bin/env bash
# Install the Debian packages vmsig builds, tests and demos with. Idempotent:
# does nothing when everything is already there.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config clang-14 libclang-rt-14-dev clang-format-14
  libcmocka-dev libjson-c-dev libinih-dev libsystemd-dev libevdev-dev
  valgrind cpio gzip
  qemu-system-x86 busybox-static linux-image-cloud-amd64
  dbus-daemon dbus-broker libdbus-1-dev
  debhelper dpkg-dev fakeroot systemd groff-base man-db
  python3-pytest python3-setuptools python3-wheel dh-python python3-all
  gcc-mingw-w64-x86-64 wine64 wine xvfb
  linux-image-amd64 udev
  libvirt-dev libvirt-daemon-system libvirt-clients
  libpng-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

LOG=${VMSIG_DEPS_LOG:-/tmp/vmsig-deps.log}
echo "deps: installing ${#missing[@]} Debian packages (apt output: $LOG)"
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "deps: not root and no sudo; install these Debian packages first: ${missing[*]}" >&2
    exit 1
  fi
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -q && $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$LOG" 2>&1; then
        tail -n 20 "$LOG" >&2
        echo "deps: apt-get failed; the whole output is in $LOG" >&2
        exit 1
fi
echo "deps: done"
