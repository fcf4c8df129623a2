#!/bin/sh
# packaging/vmsigd.service passes `systemd-analyze verify` (man pages aside:
# they are checked once installed, by the package test) with ExecStart
# pointed at the vmsigd of this build, and keeps the settings the daemon
# relies on. packaging/vmsig.tmpfiles creates the trigger directory.
# Exit 77 (skip) without systemd-analyze.
# usage: test_unit.sh PACKAGING_DIR VMSIGD
set -u
pkg=$(cd "$1" && pwd)
vmsigd=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
command -v systemd-analyze >/dev/null 2>&1 || {
        echo "SKIP: systemd-analyze is not installed (Debian: systemd)"
        exit 77
}
work=$(mktemp -d "${TMPDIR:-/tmp}/vmsig-unit-test.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT INT TERM
fails=0
bad() {
        fails=$((fails + 1))
        printf 'FAIL: %s\n' "$*"
}

sed "s|^ExecStart=/usr/sbin/vmsigd|ExecStart=$vmsigd|" "$pkg/vmsigd.service" >"$work/vmsigd.service"
out=$(systemd-analyze verify --man=no "$work/vmsigd.service" 2>&1)
[ $? -eq 0 ] && [ -z "$out" ] || bad "systemd-analyze verify: $out"

for want in Type=notify ExecStart=/usr/sbin/vmsigd "ExecReload=/bin/kill -HUP \$MAINPID" RuntimeDirectory=vmsig \
        RuntimeDirectoryPreserve=yes NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
        "RestrictAddressFamilies=AF_UNIX AF_NETLINK" DevicePolicy=closed "DeviceAllow=/dev/uinput rw" \
        "DeviceAllow=char-input r" ProtectKernelModules=yes ProtectKernelTunables=yes ProtectControlGroups=yes \
        LockPersonality=yes RestrictNamespaces=yes SystemCallFilter=@system-service; do
        grep -qxF "$want" "$pkg/vmsigd.service" || bad "vmsigd.service lacks '$want'"
done
grep -q '^PrivateDevices' "$pkg/vmsigd.service" && bad "PrivateDevices= would hide /dev/uinput and /dev/input"
grep -q '^ReadWritePaths=.*/run/vmsig' "$pkg/vmsigd.service" || bad "/run/vmsig is not writable under ProtectSystem=strict"

# The syscalls vmsigd is built on must be in @system-service.
expand() {
        systemd-analyze syscall-filter "$1" 2>/dev/null | sed -n 's/^    \([@a-z0-9_-]*\).*/\1/p' |
                while read -r s; do
                        case $s in
                        @*) expand "$s" ;;
                        *) echo "$s" ;;
                        esac
                done
}
expand @system-service | sort -u >"$work/allowed"
for s in memfd_create mmap munmap mprotect signalfd4 inotify_init1 inotify_add_watch epoll_create1 epoll_ctl \
        epoll_wait epoll_pwait eventfd2 timerfd_create timerfd_settime socket bind listen accept4 connect sendmsg \
        recvmsg getsockopt ioctl openat pread64 pwrite64 fchmod fchown unlink mkdir clone3 futex rt_sigprocmask; do
        grep -qx "$s" "$work/allowed" || bad "@system-service does not allow $s"
done

# (not root: the chown to root fails, the directories must still appear)
if ! systemd-tmpfiles --root="$work/root" --create "$pkg/vmsig.tmpfiles" >"$work/tmpfiles.out" 2>&1 &&
        [ "$(id -u)" -eq 0 ]; then
        bad "systemd-tmpfiles: $(cat "$work/tmpfiles.out")"
fi
[ -d "$work/root/run/vmsig/vms" ] || bad "vmsig.tmpfiles does not create /run/vmsig/vms"

[ "$fails" -eq 0 ] && echo "ok: vmsigd.service verifies; its sandbox allows what vmsigd uses; tmpfiles creates the trigger dir"
[ "$fails" -eq 0 ]
