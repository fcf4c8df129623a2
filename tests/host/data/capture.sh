#!/bin/bash
# SPDX-License-Identifier: MIT
# Captures `info mtree -f` from real QEMU machines as plain text (LF line
# endings, JSON string un-escaped) for the mtree parser tests.
#
#   tests/host/data/capture.sh [OUTDIR]      (default: the script's directory)
#
# Every QEMU runs under TCG with a shared file backend in /dev/shm; a trap kills
# it and removes the backend file, sockets and the OVMF vars copy, whatever
# happens. Nothing outlives the script.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here}
qemu=${QEMU:-qemu-system-x86_64}
py=${PYTHON:-python3}
ovmf_code=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd
ovmf_vars=/usr/share/OVMF/OVMF_VARS_4M.fd

work=$(mktemp -d /tmp/vmsig-mtree.XXXXXX)
tag=vmsig-mtree-$$-$RANDOM
qpid=
shm=

stop_qemu() {
        if [[ -n $qpid ]]; then
                kill "$qpid" 2>/dev/null || true
                wait "$qpid" 2>/dev/null || true
                qpid=
        fi
        if [[ -n $shm ]]; then
                rm -f "$shm"
                shm=
        fi
}
cleanup() {
        stop_qemu
        rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# QMP client: negotiate, run the HMP command, print the reply string. With
# WAIT_FOR set ('|'-separated strings), repeat until the text holds them all
# (firmware must run first).
qmp_mtree() {
        "$py" - "$1" "${2:-}" "$3" <<'EOF'
import json, socket, sys, time
path, wait_for, hmp = sys.argv[1], sys.argv[2], sys.argv[3]
wants = [w for w in wait_for.split("|") if w]
deadline = time.time() + 60
while True:
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        break
    except OSError:
        if time.time() > deadline:
            sys.exit("qmp: cannot connect to " + path)
        time.sleep(0.1)
s.settimeout(30)
f = s.makefile("rwb")
def call(cmd, args=None):
    msg = {"execute": cmd, "id": cmd}
    if args is not None:
        msg["arguments"] = args
    f.write(json.dumps(msg).encode() + b"\r\n")
    f.flush()
    while True:
        line = f.readline()
        if not line:
            sys.exit("qmp: connection closed")
        obj = json.loads(line)
        if obj.get("id") != cmd:
            continue  # greeting or an event
        if "error" in obj:
            sys.exit("qmp: %s: %s" % (cmd, obj["error"]))
        return obj["return"]
call("qmp_capabilities")
while True:
    text = call("human-monitor-command", {"command-line": hmp})
    missing = [w for w in wants if w not in text]
    if not missing or time.time() > deadline:
        break
    time.sleep(0.5)
if missing:
    sys.exit("qmp: %s never appeared" % missing)
sys.stdout.write(text.replace("\r\n", "\n"))
EOF
}

# capture NAME MACHINE SIZE WAIT_FOR [extra qemu args...]
# WAIT_FOR empty: capture while stopped (-S); otherwise run until it shows up.
# HMP (environment) overrides the monitor command, e.g. to add -o.
capture() {
        local name=$1 machine=$2 size=$3 wait_for=$4
        shift 4
        local sock=$work/$name.qmp
        shm=/dev/shm/$tag-$name
        local run=(-S)
        [[ -n $wait_for ]] && run=()
        "$qemu" -accel tcg "${run[@]}" -display none -nodefaults -no-user-config \
                -object "memory-backend-file,id=ram0,size=$size,mem-path=$shm,share=on" \
                -machine "$machine,memory-backend=ram0" -m "$size" \
                -qmp "unix:$sock,server=on,wait=off" -serial none -monitor none \
                "$@" >"$work/$name.log" 2>&1 &
        qpid=$!
        if ! qmp_mtree "$sock" "$wait_for" "${HMP:-info mtree -f}" >"$work/$name.txt"; then
                cat "$work/$name.log" >&2
                stop_qemu
                return 1
        fi
        stop_qemu
        mv "$work/$name.txt" "$out/$name.txt"
        echo "captured $name"
}

mkdir -p "$out"
capture pc-512m pc 512M ''
capture pc-4g pc 4G ''
capture pc-4g-below2g pc,max-ram-below-4g=2G 4G ''
capture pc-3584m pc 3584M ''
capture q35-512m q35 512M ''
capture q35-5g q35 5G ''
capture q35-2816m q35 2816M ''
capture q35-4g-below1g q35,max-ram-below-4g=1G 4G ''
HMP='info mtree -f -o' capture q35-5g-owners q35 5G ''
HMP='info mtree -f -d' capture q35-512m-dispatch q35 512M ''
# The tree view (no -f) is not a flat view: the parser must refuse it.
HMP='info mtree' capture bad-tree-q35-5g q35 5G ''

# OVMF + SMM: the firmware must run until it locks TSEG so the blackholes show.
if [[ -r $ovmf_code && -r $ovmf_vars ]]; then
        cp "$ovmf_vars" "$work/vars.fd"
        capture q35-ovmf-smm-1g q35,smm=on 1G smbase-blackhole \
                -global driver=cfi.pflash01,property=secure,value=on \
                -drive "if=pflash,format=raw,unit=0,readonly=on,file=$ovmf_code" \
                -drive "if=pflash,format=raw,unit=1,file=$work/vars.fd"
        cp "$ovmf_vars" "$work/vars.fd"
        # A VGA card adds device RAM (vga.vram) in the PCI hole once OVMF
        # has programmed its BARs: RAM that is not the guest-RAM backend.
        capture q35-ovmf-smm-5g q35,smm=on 5G 'smbase-blackhole|vga.vram' -device VGA \
                -global driver=cfi.pflash01,property=secure,value=on \
                -drive "if=pflash,format=raw,unit=0,readonly=on,file=$ovmf_code" \
                -drive "if=pflash,format=raw,unit=1,file=$work/vars.fd"
else
        echo "OVMF not found: skipping the SMM captures" >&2
fi
