#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""An agent: wait for a VM, type a shell command into it, and read the
result back from guest memory.

    type_and_read.py VM --system-map PATH [--name NEW] [--socket PATH]

The command is `hostname NEW` typed on the guest's keyboard (a Linux guest
with a shell on its console). The result is read from the guest kernel's
own memory: the nodename field of init_uts_ns (struct new_utsname: sysname
then nodename, 65 bytes each), at the address System.map gives, moved by
the KASLR slide (from the kernel base vmsigd publishes). The agent waits
until the kernel holds the new name, or gives up after --timeout seconds."""

from __future__ import annotations

import argparse
import sys
import time

import vmsig

UTS_NODENAME = 65  # offsetof(struct new_utsname, nodename)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("vm", help="the VM's name")
    ap.add_argument("--system-map", required=True, help="the guest kernel's System.map")
    ap.add_argument("--name", default="vmsig-agent", help="hostname to set (default vmsig-agent)")
    ap.add_argument("--socket", help="vmsigd socket (default $VMSIG_SOCKET or /run/vmsig/vmsigd.sock)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each step")
    a = ap.parse_args()
    syms = vmsig.Symbols.load(a.system_map)  # checked whole: a bad file stops here
    syms.address("init_uts_ns")
    nodename = f"init_uts_ns+{UTS_NODENAME}"

    with vmsig.connect(a.socket, name="type_and_read.py") as bus:
        print(f"waiting for VM '{a.vm}' ...", flush=True)
        vm = bus.vm(a.vm, wait=a.timeout)
        vm.wait_ready(seams=vmsig.Seam.INPUT | vmsig.Seam.MEMCTX, memory=True, timeout=a.timeout)
        mem = vm.memory()
        mem.load_symbols(syms)
        print(f"{vm.name}: {mem}; hostname now {mem.read_sym_str(nodename, 65)!r}")

        with vm.lease("input"):  # nobody else types while we do
            vm.type(f"hostname {a.name}\n")

        deadline = time.monotonic() + a.timeout
        while True:
            try:
                now = mem.read_sym_str(nodename, 65)
            except vmsig.StaleContextError:
                mem = vm.memory(timeout=a.timeout)  # the guest reset: the new boot's memory (and slide)
                mem.load_symbols(syms)
                continue
            if now == a.name:
                print(f"{vm.name}: the guest kernel's nodename is {now!r}")
                return 0
            if time.monotonic() > deadline:
                print(f"type_and_read: nodename still {now!r} after {a.timeout} s", file=sys.stderr)
                return 1
            time.sleep(0.2)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (vmsig.VmsigError, TimeoutError) as e:
        print(f"type_and_read: {e}", file=sys.stderr)
        sys.exit(1)
