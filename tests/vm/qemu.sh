# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# Sourced helpers to run test guests under QEMU (bash):
#
#   . tests/vm/qemu.sh
#   VMSIG_GUEST_DIR=/path/from/build-guest.sh    # or KERNEL=/INITRD= exported
#   start_guest NAME [extra qemu args...]        # sets GUEST_QMP GUEST_SERIAL GUEST_SHM GUEST_PID
#   wait_for_serial MARKER TIMEOUT_S [NAME]
#   stop_guest [NAME]                            # default: every guest
#
# Every guest gets a unique QMP socket, serial log and /dev/shm RAM file. An
# EXIT/INT/TERM/HUP trap kills QEMU and removes all of them, whatever happens.
# Callers with their own EXIT trap call vmsig_cleanup from it.
#
# Knobs: VMSIG_QEMU (qemu-system-x86_64), VMSIG_GUEST_MEM (256M),
# VMSIG_GUEST_MACHINE (q35), VMSIG_GUEST_APPEND (extra kernel args),
# VMSIG_GUEST_KASLR=1 boots with KASLR (default: nokaslr, which the derived
# System.map matches), VMSIG_KEEP_LOGS=1 keeps the serial logs for a
# post-mortem.

declare -gA _VMSIG_PID=() _VMSIG_DIR=() _VMSIG_SHM=() _VMSIG_QMP=() _VMSIG_SERIAL=()
declare -g _VMSIG_TRAPPED=""

vmsig_cleanup() {
        local n
        for n in "${!_VMSIG_PID[@]}"; do
                stop_guest "$n"
        done
}

_vmsig_trap() {
        [ -n "$_VMSIG_TRAPPED" ] && return
        _VMSIG_TRAPPED=1
        # Keep a caller's EXIT trap by running it after ours.
        local prev
        prev=$(trap -p EXIT | sed -e "s/^trap -- '//" -e "s/' EXIT\$//")
        # shellcheck disable=SC2064
        trap "vmsig_cleanup; ${prev:-:}" EXIT
        trap 'vmsig_cleanup; exit 130' INT
        trap 'vmsig_cleanup; exit 143' TERM
        trap 'vmsig_cleanup; exit 129' HUP
}

_vmsig_guest_files() {
        if [ -z "${KERNEL:-}" ] || [ -z "${INITRD:-}" ]; then
                [ -n "${VMSIG_GUEST_DIR:-}" ] && [ -f "$VMSIG_GUEST_DIR/guest.env" ] || {
                        echo "qemu.sh: set VMSIG_GUEST_DIR to an output of tests/vm/build-guest.sh" >&2
                        return 1
                }
                # shellcheck disable=SC1091
                . "$VMSIG_GUEST_DIR/guest.env"
        fi
}

start_guest() {
        local name=${1:?start_guest NAME [qemu args]}
        shift
        if [ -n "${_VMSIG_PID[$name]:-}" ]; then
                echo "qemu.sh: guest $name already running" >&2
                return 1
        fi
        _vmsig_guest_files || return 1
        _vmsig_trap
        local mem=${VMSIG_GUEST_MEM:-256M} machine=${VMSIG_GUEST_MACHINE:-q35}
        local dir uniq kaslr=nokaslr
        [ "${VMSIG_GUEST_KASLR:-0}" = 1 ] && kaslr="" # the kernel default (RANDOMIZE_BASE)
        dir=$(mktemp -d "${TMPDIR:-/tmp}/vmsig-vm-$name.XXXXXX") || return 1
        uniq="$name-$$-${dir##*.}"
        _VMSIG_DIR[$name]=$dir
        _VMSIG_QMP[$name]=$dir/qmp.sock
        _VMSIG_SERIAL[$name]=$dir/serial.log
        _VMSIG_SHM[$name]=/dev/shm/vmsig-test-$uniq
        : >"${_VMSIG_SERIAL[$name]}"
        "${VMSIG_QEMU:-qemu-system-x86_64}" -accel tcg -m "$mem" -smp 1 -no-reboot \
                -name "vmsig-test-$uniq" -display none -nodefaults -monitor none \
                -object "memory-backend-file,id=ram0,size=$mem,mem-path=${_VMSIG_SHM[$name]},share=on" \
                -machine "$machine,memory-backend=ram0" \
                -kernel "$KERNEL" -initrd "$INITRD" \
                -append "console=ttyS0 $kaslr panic=-1 ${VMSIG_GUEST_APPEND:-}" \
                -serial "file:${_VMSIG_SERIAL[$name]}" \
                -qmp "unix:${_VMSIG_QMP[$name]},server=on,wait=off" \
                "$@" </dev/null >"$dir/qemu.out" 2>&1 &
        _VMSIG_PID[$name]=$!
        GUEST_QMP=${_VMSIG_QMP[$name]}
        GUEST_SERIAL=${_VMSIG_SERIAL[$name]}
        GUEST_SHM=${_VMSIG_SHM[$name]}
        GUEST_PID=${_VMSIG_PID[$name]}
        export GUEST_QMP GUEST_SERIAL GUEST_SHM GUEST_PID
        # The QMP socket appears once QEMU is initialised: a short wait spares
        # every caller its own retry loop.
        local i
        for i in $(seq 1 100); do
                [ -S "$GUEST_QMP" ] && return 0
                if ! kill -0 "$GUEST_PID" 2>/dev/null; then
                        echo "qemu.sh: QEMU for $name exited: $(cat "$dir/qemu.out")" >&2
                        stop_guest "$name"
                        return 1
                fi
                sleep 0.1
        done
        echo "qemu.sh: no QMP socket for $name after 10 s" >&2
        return 1
}

# wait_for_serial MARKER TIMEOUT_S [NAME]: fixed-string match in the serial log.
wait_for_serial() {
        local marker=${1:?marker} timeout=${2:?timeout} name=${3:-}
        if [ -z "$name" ]; then
                name=$(printf '%s\n' "${!_VMSIG_PID[@]}" | head -n 1)
        fi
        local log=${_VMSIG_SERIAL[$name]:-} pid=${_VMSIG_PID[$name]:-}
        [ -n "$log" ] || {
                echo "qemu.sh: no guest $name" >&2
                return 1
        }
        local deadline=$((SECONDS + timeout))
        while [ "$SECONDS" -le "$deadline" ]; do
                grep -qF -- "$marker" "$log" 2>/dev/null && return 0
                if ! kill -0 "$pid" 2>/dev/null; then
                        grep -qF -- "$marker" "$log" 2>/dev/null && return 0
                        echo "qemu.sh: guest $name died before '$marker'" >&2
                        return 1
                fi
                sleep 0.1
        done
        echo "qemu.sh: '$marker' not seen on $name's serial within ${timeout}s; last lines:" >&2
        tail -n 20 "$log" >&2
        return 1
}

# stop_guest [NAME]: TERM, then KILL after 5 s; removes socket, logs, RAM file.
stop_guest() {
        if [ $# -eq 0 ]; then
                vmsig_cleanup
                return 0
        fi
        local name=$1 pid=${_VMSIG_PID[$1]:-} i
        if [ -n "$pid" ]; then
                kill -TERM "$pid" 2>/dev/null || true
                for i in $(seq 1 50); do
                        kill -0 "$pid" 2>/dev/null || break
                        sleep 0.1
                done
                kill -KILL "$pid" 2>/dev/null || true
                wait "$pid" 2>/dev/null || true
        fi
        [ -n "${_VMSIG_SHM[$name]:-}" ] && rm -f "${_VMSIG_SHM[$name]}"
        if [ -n "${_VMSIG_DIR[$name]:-}" ]; then
                if [ "${VMSIG_KEEP_LOGS:-0}" = 1 ]; then
                        rm -f "${_VMSIG_QMP[$name]}"
                        echo "qemu.sh: kept ${_VMSIG_DIR[$name]}" >&2
                else
                        rm -rf "${_VMSIG_DIR[$name]}"
                fi
        fi
        unset "_VMSIG_PID[$name]" "_VMSIG_DIR[$name]" "_VMSIG_SHM[$name]" "_VMSIG_QMP[$name]" \
                "_VMSIG_SERIAL[$name]"
        return 0
}
