#!/bin/sh
# Runs a command inside an emulation of vmsigd.service's sandbox, for tests
# on machines without systemd as PID 1 (where `systemd-run -p ...` cannot
# work). Read from the unit and emulated with unshare(1) and setpriv(1):
#   CapabilityBoundingSet=  the bounding set; as root, also what the command
#                           gets (no ambient or inheritable capabilities);
#   NoNewPrivileges=yes
#   ProtectSystem=strict    every mount read-only except /dev, /proc, /sys,
#                           and RW_DIR (standing in for the unit's
#                           ReadWritePaths=, RuntimeDirectory= and
#                           LogsDirectory=);
#   PrivateDevices=yes      a /dev of null, zero, full, random, urandom, tty,
#                           pts, ptmx and the host's shm, hugepages, mqueue;
#   PrivateNetwork=yes      a new network namespace;
#   ProtectProc=, ProcSubset=  a procfs mounted with hidepid=, subset=.
# Not emulated: SystemCallFilter=, RestrictAddressFamilies=, the device
# cgroup, PrivateTmp= (tests keep their files in /tmp), ProtectHome= and the
# other Protect*= settings.
# SANDBOX_CAPS, if set, replaces the unit's capabilities (setpriv syntax,
# e.g. "+chown"): a test can show that one is needed.
# Exit 77 when it cannot emulate (not root, a tool missing).
# usage: sandbox-exec.sh UNIT_FILE RW_DIR COMMAND [ARG...]
set -eu
unit=$1 rw=$2
shift 2
[ "$(id -u)" -eq 0 ] || {
        echo "sandbox-exec: must run as root" >&2
        exit 77
}
for t in unshare setpriv mountpoint; do
        command -v "$t" >/dev/null 2>&1 || {
                echo "sandbox-exec: $t is missing (util-linux)" >&2
                exit 77
        }
done

setting() { sed -n "s/^$1=//p" "$unit" | tail -n 1; }
if [ -n "${SANDBOX_CAPS+x}" ]; then
        caps=$SANDBOX_CAPS
else
        # No CapabilityBoundingSet= line: systemd keeps every capability.
        grep -q '^CapabilityBoundingSet=' "$unit" && caps= || caps=all
        for c in $(setting CapabilityBoundingSet); do
                c=$(printf '%s' "${c#CAP_}" | tr '[:upper:]' '[:lower:]')
                caps="$caps${caps:+,}+$c"
        done
fi
[ "$(setting NoNewPrivileges)" = yes ] && nnp=--no-new-privs || nnp=
[ "$(setting PrivateNetwork)" = yes ] && net=--net || net=
strict=$(setting ProtectSystem)
pdev=$(setting PrivateDevices)
hidepid=$(setting ProtectProc)
subset=$(setting ProcSubset)

# shellcheck disable=SC2016 # the inner script expands its own arguments
# shellcheck disable=SC2086 # $net is one word or none
exec unshare --mount $net --propagation slave -- sh -eu -c '
caps=$1 nnp=$2 strict=$3 pdev=$4 hidepid=$5 subset=$6 rw=$7
shift 7
if [ "$pdev" = yes ]; then
        old=$(mktemp -d /run/vmsig-sandbox-dev.XXXXXX)
        mount --rbind /dev "$old"
        mount -t tmpfs -o mode=0755,nosuid tmpfs /dev
        for n in null zero full random urandom tty; do
                [ -e "$old/$n" ] || continue
                : >"/dev/$n"
                mount --bind "$old/$n" "/dev/$n"
        done
        for d in shm hugepages mqueue pts; do
                mountpoint -q "$old/$d" || continue
                mkdir "/dev/$d"
                mount --bind "$old/$d" "/dev/$d"
        done
        ln -s pts/ptmx /dev/ptmx
        umount -l "$old"
        rmdir "$old"
        mount -o remount,bind,ro /dev
fi
opts=nosuid,nodev,noexec
[ -n "$hidepid" ] && [ "$hidepid" != default ] && opts="$opts,hidepid=$hidepid"
[ "$subset" = pid ] && opts="$opts,subset=pid"
mount -t proc -o "$opts" proc /proc
if [ "$strict" = strict ]; then
        for m in $(awk "{ print \$5 }" /proc/self/mountinfo | sort -u); do
                case $m in /dev | /dev/* | /proc | /proc/* | /sys | /sys/*) continue ;; esac
                mount -o remount,bind,ro "$m" 2>/dev/null || true
        done
        mount --bind "$rw" "$rw"
        mount -o remount,bind,rw "$rw"
fi
[ "$caps" = all ] && bset= || bset="--bounding-set=-all${caps:+,$caps}"
exec setpriv $nnp --inh-caps=-all --ambient-caps=-all $bset -- "$@"
' sandbox "$caps" "$nnp" "$strict" "$pdev" "$hidepid" "$subset" "$rw" "$@"
