#!/usr/bin/env bash
# The Debian packages, end to end, on this machine:
#   1. packaging/build-debs.sh: copy the source tree (git's view: tracked +
#      untracked-not-ignored files; no build dirs) to a temporary directory
#      and build the .debs there with dpkg-buildpackage -us -uc -b;
#   2. apt-get install them; check the file layout, the conffile, tmpfiles,
#      man pages and systemd-analyze verify of the installed unit;
#   3. start the INSTALLED vmsigd with the installed config plus a private
#      socket and trigger directory, drop a stub trigger file and run the
#      installed libvirt hook on sample XML, see both with the installed
#      vmsigctl list;
#   4. reinstall vmsig while the daemon runs: postinst says the running
#      daemon keeps the old build, and the daemon is still serving;
#   5. compile and run a program against libvmsig-dev + libvmie-dev via
#      pkg-config; configure and build the tree with -DVMSIG_SYSTEM_LIBVMIE=ON
#      against the installed libvmie;
#   6. stop vmsigd, apt-get purge, check that nothing is left.
# Runs only with CI=true or VMSIG_TEST_PACKAGES=1, as root; otherwise it says
# why and exits 77 (ctest SKIP_RETURN_CODE). It refuses to touch a machine
# where any of the packages is already installed.
# usage: test_debian_packages.sh SOURCE_DIR
set -euo pipefail

src=$(cd "$1" && pwd)
data=$src/tests/pkg/data
packages=(vmsig libvmsig0 libvmsig-dev libvmie0 libvmie-dev libvgpu-perception0 libvgpu-perception-dev python3-vmsig)
t0=$SECONDS

skip() {
        echo "SKIP: $*"
        exit 77
}
[ -z "${VMSIG_PKG_SKIP_REASON:-}" ] || skip "$VMSIG_PKG_SKIP_REASON"
if [ "${CI:-}" != true ] && [ "${VMSIG_TEST_PACKAGES:-}" != 1 ]; then
        skip "builds, installs and purges the Debian packages system-wide; runs with CI=true or VMSIG_TEST_PACKAGES=1 (as root)"
fi
[ "$(id -u)" -eq 0 ] || skip "needs root to install and purge packages (run as root with VMSIG_TEST_PACKAGES=1)"
for p in "${packages[@]}"; do
        if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "installed\|config-files"; then
                skip "package $p is already on this machine; this test would purge it"
        fi
done

step() { printf '\n== [%3ds] %s\n' $((SECONDS - t0)) "$*"; }
die() {
        echo "FAIL: $*" >&2
        exit 1
}
for tool in dpkg-buildpackage dh apt-get pkg-config cc; do
        command -v "$tool" >/dev/null || die "$tool is missing (scripts/deps.sh installs what this test needs)"
done

work=$(mktemp -d /tmp/vmsig-pkg-test.XXXXXX)
daemon_pid=
installed=0
cleanup() {
        local rc=$?
        if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
                kill -TERM "$daemon_pid" 2>/dev/null || true
                wait "$daemon_pid" 2>/dev/null || true
        fi
        if [ "$installed" = 1 ]; then
                echo "cleanup: purging the packages after a failure"
                DEBIAN_FRONTEND=noninteractive apt-get purge -y -q "${packages[@]}" >/dev/null 2>&1 || true
        fi
        if [ "$rc" -ne 0 ] && [ -f "$work/daemon.log" ]; then
                echo "--- vmsigd log"
                cat "$work/daemon.log"
        fi
        rm -rf "$work"
        exit "$rc"
}
trap cleanup EXIT

# ---- 1. build -------------------------------------------------------------
step "packaging/build-debs.sh (dpkg-buildpackage -us -uc -b in a copy of the tree)"
"$src/packaging/build-debs.sh" "$work" || die "packaging/build-debs.sh failed"
debs=()
for p in "${packages[@]}"; do
        f=$(ls "$work"/"${p}"_*.deb 2>/dev/null | head -n1) || true
        [ -n "$f" ] || die "no ${p}_*.deb was built"
        debs+=("$f")
done
# symbols files are tracked: dpkg-gensymbols must not have found differences
if grep -q "dpkg-gensymbols: warning: some new symbols" "$work/build.log"; then
        echo "note: libraries export symbols the symbols files do not list yet:"
        grep -A20 "^+ " "$work/build.log" | grep "^+" | head -20 || true
fi

# ---- 2. install -----------------------------------------------------------
step "apt-get install ${debs[*]##*/}"
installed=1
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${debs[@]}" >"$work/install.log" 2>&1 ||
        {
                cat "$work/install.log"
                die "apt-get install failed"
        }
for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}\n' "$p" | grep -q "install ok installed" || die "$p is not installed"
done

step "installed layout"
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
expect_file() { [ -e "$1" ] || die "missing after install: $1"; }
for f in /usr/sbin/vmsigd /usr/bin/vmsigctl /lib/systemd/system/vmsigd.service /usr/lib/tmpfiles.d/vmsig.conf \
        /etc/vmsig/vmsigd.conf /usr/share/vmsig/libvirt-hook/qemu /usr/share/vmsig/libvirt-hook/README.md \
        /usr/share/man/man8/vmsigd.8.gz /usr/share/man/man1/vmsigctl.1.gz /usr/share/man/man5/vmsigd.conf.5.gz \
        /usr/share/man/man5/vmsig-trigger.5.gz \
        /usr/sbin/vmsig-uinput /lib/systemd/system/vmsig-uinput@.service /lib/udev/rules.d/60-vmsig-uinput.rules \
        /usr/share/man/man1/vmsig-uinput.1.gz \
        /usr/lib/"$multiarch"/vmsig/vmsigd-libvirt.so \
        /usr/lib/"$multiarch"/libvmsig.so.0 /usr/lib/"$multiarch"/libvmie.so.0 \
        /usr/lib/"$multiarch"/libvmsig.so /usr/lib/"$multiarch"/libvmie.so \
        /usr/lib/"$multiarch"/pkgconfig/libvmsig.pc /usr/lib/"$multiarch"/pkgconfig/libvmie.pc \
        /usr/include/vmsig/client.h /usr/include/vmie/vmie.h; do
        expect_file "$f"
done
[ -x /usr/share/vmsig/libvirt-hook/qemu ] || die "the libvirt hook is not executable"
dpkg-query -W -f='${Conffiles}\n' vmsig | grep -q "^ /etc/vmsig/vmsigd.conf " ||
        die "/etc/vmsig/vmsigd.conf is not a conffile"
[ "$(dpkg -S /usr/lib/"$multiarch"/libvmsig.so.0 | cut -d: -f1)" = libvmsig0 ] || die "libvmsig.so.0 not in libvmsig0"
[ "$(dpkg -S /usr/lib/"$multiarch"/libvmie.so | cut -d: -f1)" = libvmie-dev ] || die "libvmie.so not in libvmie-dev"
for f in libvgpu-perception.so.0 libvgpu-perception.so pkgconfig/libvgpu-perception.pc; do
        expect_file /usr/lib/"$multiarch"/$f
done
expect_file /usr/include/vgpu/perception.h
[ "$(dpkg -S /usr/lib/"$multiarch"/libvgpu-perception.so.0 | cut -d: -f1)" = libvgpu-perception0 ] ||
        die "libvgpu-perception.so.0 not in libvgpu-perception0"
ldd /usr/bin/vmsigctl | grep -E "lib(vmsig|vmie)\.so\.0 => /(usr/)?lib/$multiarch/" | sed 's/^/  /' || true
[ "$(ldd /usr/bin/vmsigctl | grep -cE "lib(vmsig|vmie)\.so\.0 => /(usr/)?lib/$multiarch/")" -eq 2 ] ||
        die "vmsigctl does not use the installed libvmsig.so.0 and libvmie.so.0"
if command -v systemd-tmpfiles >/dev/null; then
        # postinst ran systemd-tmpfiles --create (dh_installtmpfiles)
        [ -d /run/vmsig/vms ] || die "/run/vmsig/vms was not created by tmpfiles.d on install"
        [ "$(stat -c %a:%U /run/vmsig/vms)" = 755:root ] || die "/run/vmsig/vms is $(stat -c %a:%U /run/vmsig/vms)"
        echo "  /run/vmsig/vms from tmpfiles.d: $(stat -c '%A %U:%G' /run/vmsig/vms)"
fi
man -w vmsigd vmsigctl vmsigd.conf vmsig-trigger vmsig-uinput >/dev/null 2>&1 || echo "  (man -w cannot find the pages: man-db not installed?)"
# vmsig-uinput runs from the package (probe: 0 usable, 1 with the reason)
out=$(/usr/sbin/vmsig-uinput probe 2>&1) && rc=0 || rc=$?
echo "  vmsig-uinput probe: $out (exit $rc)"
case $rc:$out in
0:*usable* | 1:*/dev/uinput*) ;;
*) die "vmsig-uinput probe: exit $rc: $out" ;;
esac
grep -qF 'ATTRS{id/vendor}=="5653"' /lib/udev/rules.d/60-vmsig-uinput.rules ||
        die "the installed udev rule does not match vmsig's vendor id"
/usr/sbin/vmsigd --check-config >/dev/null || die "vmsigd --check-config fails on the shipped /etc/vmsig/vmsigd.conf"

if command -v systemd-analyze >/dev/null; then
        step "systemd-analyze verify /lib/systemd/system/vmsigd.service"
        if ! out=$(systemd-analyze verify /lib/systemd/system/vmsigd.service 2>&1) || [ -n "$out" ]; then
                printf '%s\n' "$out"
                die "systemd-analyze verify complained about the installed unit"
        fi
        echo "  clean"
        for prop in Type=notify ExecStart=/usr/sbin/vmsigd RuntimeDirectory=vmsig RuntimeDirectoryPreserve=yes \
                PrivateDevices=yes "SystemCallFilter=@system-service" ProtectSystem=strict; do
                grep -qx "$prop" /lib/systemd/system/vmsigd.service || die "the unit lacks $prop"
        done
        # PrivateDevices= is safe: vmsigd gets uinput fds from vmsig-uinput
        # over a socket and never opens /dev/uinput itself.

        step "systemd-analyze verify vmsig-uinput@pkgtest.service (the installed template)"
        # verify takes a unit name as a file in the current directory and
        # puts that directory first in the unit path: run it from an empty one,
        # or the build tree's own vmsig-uinput@.service would be checked.
        empty=$(mktemp -d)
        if ! out=$(cd "$empty" && systemd-analyze verify vmsig-uinput@pkgtest.service 2>&1) || [ -n "$out" ]; then
                rmdir "$empty"
                printf '%s\n' "$out"
                die "systemd-analyze verify complained about the installed vmsig-uinput@.service"
        fi
        rmdir "$empty"
        echo "  clean"
        for prop in Type=notify "ExecStart=/usr/sbin/vmsig-uinput hold %i" FileDescriptorStoreMax=2 \
                "DeviceAllow=/dev/uinput rw"; do
                grep -qx "$prop" /lib/systemd/system/vmsig-uinput@.service || die "vmsig-uinput@.service lacks $prop"
        done
else
        echo "note: systemd-analyze is not installed; unit not verified"
fi

# ---- 3. run the installed daemon -----------------------------------------
step "start the installed vmsigd (private socket and trigger directory)"
run=$work/run
mkdir -p "$run/vms"
chmod 0755 "$run" "$run/vms"
sock=$run/vmsigd.sock
/usr/sbin/vmsigd --config /etc/vmsig/vmsigd.conf --socket "$sock" --trigger-dir "$run/vms" --audit stderr \
        >"$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do
        [ -S "$sock" ] && break
        kill -0 "$daemon_pid" 2>/dev/null || die "vmsigd exited at start"
        sleep 0.1
done
[ -S "$sock" ] || die "vmsigd did not create $sock within 10 s"
# the shipped config leaves libvirt_uri at qemu:///system: the installed
# driver module is loaded (libvirtd need not run for that)
for _ in $(seq 50); do
        grep -q "/vmsigd-libvirt.so$" "/proc/$daemon_pid/maps" && break
        sleep 0.1
done
grep -q "/usr/lib/$multiarch/vmsig/vmsigd-libvirt.so$" "/proc/$daemon_pid/maps" ||
        die "the installed vmsigd did not load /usr/lib/$multiarch/vmsig/vmsigd-libvirt.so: $(grep -i 'libvirt' "$work/daemon.log" | head -3)"

# a stub VM, written the atomic way
tmp=$(mktemp "$run/vms/.pkgtest.XXXXXX")
printf 'name=pkgtest-stub\ndriver=stub\n' >"$tmp"
chmod 0644 "$tmp"
mv "$tmp" "$run/vms/pkgtest-stub"
# a libvirt VM, through the installed hook
VMSIG_TRIGGER_DIR=$run/vms VMSIG_LIBVIRT_QEMU_CONF=$data/qemu.conf \
        /usr/share/vmsig/libvirt-hook/qemu win10 prepare begin - <"$data/domain-vmsig.xml" ||
        die "the installed libvirt hook failed"

list=
for _ in $(seq 50); do
        list=$(/usr/bin/vmsigctl --socket "$sock" list 2>&1) || true
        if grep -q "pkgtest-stub" <<<"$list" && grep -q "win10" <<<"$list"; then
                break
        fi
        sleep 0.1
done
printf '%s\n' "$list" | sed 's/^/  /'
grep -Eq "^[0-9]+ +pkgtest-stub +memctx,input,vmhost" <<<"$list" || die "vmsigctl list does not show the stub VM"
grep -Eq "^[0-9]+ +win10 " <<<"$list" || die "vmsigctl list does not show the VM the hook announced"
/usr/bin/vmsigctl --socket "$sock" --json list | grep -q '"name": "pkgtest-stub"' || die "vmsigctl --json list"
# python3-vmsig: the installed module, with the installed libvmie0
expect_file /usr/lib/python3/dist-packages/vmsig/__init__.py
expect_file /usr/share/doc/python3-vmsig/examples/watch_events.py
(cd / && env -u PYTHONPATH -u VMSIG_LIBVMIE /usr/bin/python3 -c 'import sys, vmsig
with vmsig.connect(sys.argv[1]) as bus:
    vm = bus.vm("pkgtest-stub", wait=10)
    print("  python3-vmsig:", vmsig.__file__, vm, repr(vm.memory(timeout=10).read_str(0xffffffff80200100)))
' "$sock") || die "python3-vmsig cannot list the stub VM and read its memory"

# the hook takes it away again
VMSIG_TRIGGER_DIR=$run/vms /usr/share/vmsig/libvirt-hook/qemu win10 release end shutdown </dev/null ||
        die "hook release end failed"
for _ in $(seq 50); do
        /usr/bin/vmsigctl --socket "$sock" list 2>/dev/null | grep -q win10 || break
        sleep 0.1
done
if /usr/bin/vmsigctl --socket "$sock" list | grep -q win10; then
        die "win10 still listed after release end"
fi
echo "  win10 gone after the hook's release end"

# ---- 4. upgrade while running ----------------------------------------------
step "reinstall vmsig while vmsigd runs (upgrade path of postinst)"
conf_sum=$(md5sum </etc/vmsig/vmsigd.conf)
dpkg -i "${debs[0]}" >"$work/upgrade.log" 2>&1 || {
        cat "$work/upgrade.log"
        die "dpkg -i (reinstall) failed"
}
grep -A5 "keeps the old" "$work/upgrade.log" | sed 's/^/  /' || true
grep -q "running daemon keeps the old" "$work/upgrade.log" || die "postinst did not say that vmsigd keeps the old build"
kill -0 "$daemon_pid" 2>/dev/null || die "vmsigd did not survive the upgrade"
/usr/bin/vmsigctl --socket "$sock" list | grep -q pkgtest-stub || die "vmsigd stopped serving after the upgrade"
[ "$(md5sum </etc/vmsig/vmsigd.conf)" = "$conf_sum" ] || die "the upgrade changed /etc/vmsig/vmsigd.conf"

# ---- 5. the -dev packages ---------------------------------------------------
step "compile against libvmsig-dev and libvmie-dev (pkg-config)"
cat >"$work/hello.c" <<'EOF'
#include <stdio.h>
#include <vmie/vmie.h>
#include <vmsig/bus.h>
#include <vmsig/client.h>

int main(int argc, char **argv)
{
        struct vmsig_client *c = NULL;
        char caps[128];
        int r;

        if (argc != 2 || !vmie_va_canonical(0xffff800000000000ull, 4) || vmie_va_canonical(0x0000800000000000ull, 4))
                return 2;
        if ((r = vmsig_client_new(&c)) < 0 || (r = vmsig_client_connect(c, argv[1], "pkg-hello", 5000)) < 0) {
                fprintf(stderr, "connect: %d\n", r);
                vmsig_client_free(c);
                return 1;
        }
        const struct vmsig_client_info *i = vmsig_client_get_info(c);
        printf("control %u, caps %s\n", (unsigned)i->control_id, vmsig_caps_format(i->caps, caps, sizeof(caps)));
        vmsig_client_free(c);
        return 0;
}
EOF
pkg-config --modversion libvmsig libvmie | sed 's/^/  version /'
# shellcheck disable=SC2046
cc -Wall -Werror -o "$work/hello" "$work/hello.c" $(pkg-config --cflags --libs libvmsig libvmie) ||
        die "cannot build against the installed -dev packages"
out=$("$work/hello" "$sock") || die "the program built against libvmsig-dev failed"
printf '%s\n' "$out" | sed 's/^/  /'
grep -q "^control [0-9]" <<<"$out" || die "the program built against libvmsig-dev did not connect"

step "configure + build the tree with -DVMSIG_SYSTEM_LIBVMIE=ON against the installed libvmie"
b=$work/build-system-libvmie
cmake -S "$src" -B "$b" -DVMSIG_SYSTEM_LIBVMIE=ON -DVMSIG_WERROR=OFF >"$work/cmake.log" 2>&1 || {
        cat "$work/cmake.log"
        die "configure with VMSIG_SYSTEM_LIBVMIE=ON failed"
}
grep "libvmie: using the installed" "$work/cmake.log" | sed 's/^/  /' || true
cmake --build "$b" -j"$(nproc)" --target vmsig vmsigctl >"$work/cmake-build.log" 2>&1 || {
        tail -n 40 "$work/cmake-build.log"
        die "build with VMSIG_SYSTEM_LIBVMIE=ON failed"
}
[ -z "$(find "$b" -name 'libvmie.so*')" ] || die "VMSIG_SYSTEM_LIBVMIE=ON still built a libvmie.so"
ldd "$b/src/tools/vmsigctl" | grep -E "libvmie\.so\.0 => /(usr/)?lib/$multiarch/libvmie\.so\.0" | sed 's/^/  /' ||
        die "vmsigctl of the VMSIG_SYSTEM_LIBVMIE build does not use the installed libvmie"
ldd "$b/src/core/libvmsig.so" | grep -qE "libvmie\.so\.0 => /(usr/)?lib/$multiarch/" ||
        die "libvmsig of the VMSIG_SYSTEM_LIBVMIE build does not use the installed libvmie"

# ---- 6. stop, purge, nothing left -----------------------------------------
step "stop vmsigd"
kill -TERM "$daemon_pid"
for _ in $(seq 100); do
        kill -0 "$daemon_pid" 2>/dev/null || break
        sleep 0.1
done
kill -0 "$daemon_pid" 2>/dev/null && die "vmsigd did not stop within 10 s of SIGTERM"
wait "$daemon_pid" && rc=0 || rc=$?
daemon_pid=
[ "$rc" -eq 0 ] || die "vmsigd exited with $rc after SIGTERM"
grep -q "stopped" "$work/daemon.log" || die "vmsigd did not log its clean stop"
echo "  stopped cleanly"

step "apt-get purge"
owned=$(dpkg -L "${packages[@]}" | sort -u)
DEBIAN_FRONTEND=noninteractive apt-get purge -y -q "${packages[@]}" >"$work/purge.log" 2>&1 || {
        cat "$work/purge.log"
        die "apt-get purge failed"
}
installed=0
for p in "${packages[@]}"; do
        if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "installed\|config-files"; then
                die "$p is still known to dpkg after purge: $(dpkg-query -W -f='${Status}' "$p")"
        fi
done
left=()
while IFS= read -r f; do
        [ -n "$f" ] || continue
        if [ -e "$f" ] && [ ! -d "$f" ]; then
                left+=("$f")
        fi
done <<<"$owned"
for d in /etc/vmsig /usr/include/vmsig /usr/include/vmie /usr/share/vmsig /usr/share/doc/vmsig /var/log/vmsig /run/vmsig; do
        if [ -e "$d" ]; then left+=("$d"); fi
done
for f in /usr/lib/"$multiarch"/libvmsig* /usr/lib/"$multiarch"/libvmie* /usr/lib/"$multiarch"/pkgconfig/libvm*; do
        if [ -e "$f" ]; then left+=("$f"); fi
done
[ ${#left[@]} -eq 0 ] || die "left behind after purge: ${left[*]}"
echo "  nothing left"

step "done: packages built, installed, exercised and purged"
