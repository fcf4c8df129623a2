#!/bin/bash
# SPDX-License-Identifier: MIT
# Boots the test guest through qemu.sh and checks its serial markers.
#   smoke-guest.sh GUEST_DIR
set -euo pipefail
VMSIG_GUEST_DIR=${1:?usage: $0 GUEST_DIR}
export VMSIG_GUEST_DIR
. "$(dirname "$(readlink -f "$0")")/qemu.sh"
start_guest smoke
echo "QEMU pid $GUEST_PID, QMP $GUEST_QMP, RAM $GUEST_SHM"
[ -S "$GUEST_QMP" ]
# QEMU creates the RAM file after the QMP socket (memory backends are late
# objects): wait for it rather than race it.
for _ in $(seq 1 100); do [ -f "$GUEST_SHM" ] && break; sleep 0.1; done
[ -f "$GUEST_SHM" ] || { echo "no RAM file $GUEST_SHM after 10 s" >&2; exit 1; }
start=$SECONDS
wait_for_serial VMSIG-GUEST-READY 60 smoke
wait_for_serial "Linux version" 10 smoke
echo "guest ready in $((SECONDS - start)) s: $(grep -m1 'Linux version' "$GUEST_SERIAL" | tr -d '\r')"
shm=$GUEST_SHM qmp=$GUEST_QMP pid=$GUEST_PID
stop_guest smoke
! kill -0 "$pid" 2>/dev/null || { echo "QEMU still running" >&2; exit 1; }
[ ! -e "$shm" ] && [ ! -e "$qmp" ] || { echo "leftovers: $shm $qmp" >&2; exit 1; }
echo "smoke: OK"
