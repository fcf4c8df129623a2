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
        "CapabilityBoundingSet=CAP_DAC_OVERRIDE CAP_CHOWN CAP_SYS_PTRACE CAP_FOWNER" AmbientCapabilities= LimitNOFILE=524288 \
        RestrictAddressFamilies=AF_UNIX PrivateDevices=yes PrivateNetwork=yes ProtectProc=ptraceable ProcSubset=pid \
        ProtectKernelModules=yes ProtectKernelTunables=yes ProtectControlGroups=yes LockPersonality=yes \
        RestrictNamespaces=yes SystemCallFilter=@system-service; do
        grep -qxF "$want" "$pkg/vmsigd.service" || bad "vmsigd.service lacks '$want'"
done
# vmsigd opens no device node (uinput fds come from vmsig-uinput over a
# socket), and no /dev/shm or /dev/hugepages file may become read-only.
grep -q '^DeviceAllow=' "$pkg/vmsigd.service" && bad "vmsigd needs no DeviceAllow= (PrivateDevices=yes)"
grep -q '^ReadOnlyPaths=.*/dev' "$pkg/vmsigd.service" && bad "RAM files under /dev must stay writable"
grep -q '^ReadWritePaths=.*/run/vmsig' "$pkg/vmsigd.service" || bad "/run/vmsig is not writable under ProtectSystem=strict"
grep -q '^ReadWritePaths=.*/var/lib/libvirt/qemu/ram' "$pkg/vmsigd.service" ||
        bad "libvirt's RAM files must stay writable (memwrite)"

# The syscalls vmsigd is built on must pass the unit's SystemCallFilter=
# lines, applied in order as systemd does: the first (an allow list) sets
# the list, later "~" lines take groups away and plain lines add them back.
expand() {
        systemd-analyze syscall-filter "$1" 2>/dev/null | sed -n 's/^    \([@a-z0-9_-]*\).*/\1/p' |
                while read -r s; do
                        case $s in
                        @*) expand "$s" ;;
                        *) echo "$s" ;;
                        esac
                done
}
: >"$work/allowed"
first=1
sed -n 's/^SystemCallFilter=//p' "$pkg/vmsigd.service" >"$work/filters"
while read -r line; do
        case $line in
        "~"*) deny=1 line=${line#\~} ;;
        *) deny=0 ;;
        esac
        [ "$first" -eq 1 ] && [ "$deny" -eq 1 ] && bad "the first SystemCallFilter= must be an allow list"
        first=0
        for g in $line; do
                case $g in
                @*) expand "$g" ;;
                *) echo "$g" ;;
                esac
        done | sort -u >"$work/group"
        if [ "$deny" -eq 1 ]; then
                sort -u "$work/allowed" | comm -23 - "$work/group" >"$work/next"
        else
                sort -u "$work/allowed" "$work/group" >"$work/next"
        fi
        mv "$work/next" "$work/allowed"
done <"$work/filters"
for s in memfd_create mmap munmap mprotect signalfd4 inotify_init1 inotify_add_watch epoll_create1 epoll_ctl \
        epoll_wait epoll_pwait eventfd2 timerfd_create timerfd_settime socket bind listen accept4 connect sendmsg \
        recvmsg getsockopt ioctl openat pread64 pwrite64 fchmod fchown chown unlink mkdir clone3 futex \
        rt_sigprocmask prlimit64; do
        grep -qx "$s" "$work/allowed" || bad "the unit's SystemCallFilter= does not allow $s"
done
# ...and what it never needs stays out (@privileged but chown, @resources).
for s in setuid setgroups capset chroot bpf acct setrlimit sched_setscheduler ioprio_set; do
        grep -qx "$s" "$work/allowed" && bad "the unit's SystemCallFilter= allows $s"
done

# (not root: the chown to root fails, the directories must still appear)
if ! systemd-tmpfiles --root="$work/root" --create "$pkg/vmsig.tmpfiles" >"$work/tmpfiles.out" 2>&1 &&
        [ "$(id -u)" -eq 0 ]; then
        bad "systemd-tmpfiles: $(cat "$work/tmpfiles.out")"
fi
[ -d "$work/root/run/vmsig/vms" ] || bad "vmsig.tmpfiles does not create /run/vmsig/vms"

[ "$fails" -eq 0 ] && echo "ok: vmsigd.service verifies; its sandbox allows what vmsigd uses; tmpfiles creates the trigger dir"
[ "$fails" -eq 0 ]
