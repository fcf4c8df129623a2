# SPDX-License-Identifier: MIT
"""The package against a real TCG guest through the real vmsigd (label vm):
read the guest kernel's linux_banner through vm.memory(), by number
(System.map address, nokaslr) and by name through vmsig.Symbols with the
kernel base of the MEMCTX (slide 0 under nokaslr), and type into the guest and find the keys in the input
log it prints on its serial console (tests/vm/README.md).

The guest is started by guest_harness.py (as tests/vm/vm_guest.h does)."""

from __future__ import annotations

import os
import re

import pytest
from conftest import wait_for
from guest_harness import BOOT_TIMEOUT, Guest

import vmsig


@pytest.fixture
def guest():
    g = Guest("py")
    try:
        yield g
    finally:
        g.stop()
        assert not os.path.exists(g.shm)


def test_banner_and_typing(guest, daemon):
    syms = vmsig.Symbols.load(guest.system_map())  # checked whole, as vmsigctl does
    banner_va = syms["linux_banner"]
    print("# waiting for the guest to boot (TCG)", flush=True)
    wait_for(lambda: guest.proc.poll() is not None or "VMSIG-GUEST-READY" in guest.serial_text(),
             timeout=BOOT_TIMEOUT, what="the guest to boot")
    assert guest.proc.poll() is None, "QEMU exited"
    tmp = os.path.join(daemon.trig, ".g.tmp")
    with open(tmp, "w") as f:
        f.write(f"name=guest\ndriver=qemu\nqmp={guest.qmp}\nram={guest.shm}\n")
    os.rename(tmp, os.path.join(daemon.trig, "guest.vm"))

    with vmsig.connect(daemon.sock, name="pytest-vm") as bus:
        vm = bus.vm("guest", wait=30)
        print("# waiting for the memory context", flush=True)
        vm.wait_ready(seams=vmsig.Seam.MEMCTX | vmsig.Seam.INPUT, memory=True, timeout=120)
        mem = vm.memory()
        assert mem.os == "linux"
        text = mem.read_str(banner_va, 512)
        print("#", text.strip())
        assert text.startswith("Linux version 6")
        assert mem.read(banner_va, 14) == b"Linux version "
        assert mem.translate(banner_va).gpa != 0
        # by name: the MEMCTX's kernel base is the guest's _text (nokaslr: the map's own)
        print(f"# kernel base 0x{mem.kernel_base or 0:x}, map _text 0x{syms.text:x}", flush=True)
        assert mem.kernel_base == syms.text
        mem.load_symbols(syms)
        assert mem.symbol("linux_banner") == banner_va
        assert mem.read_sym_str("linux_banner", 512) == text
        assert mem.read_sym("linux_banner+0x6", 8) == b"version "

        # the QMP input path is up once a key is accepted (shift: harmless;
        # this guest has a keyboard but no absolute pointer)
        def input_up() -> bool:
            try:
                vm.key("leftshift")
                return True
            except vmsig.CommandError as e:
                print("# input not ready:", e, flush=True)
                return False

        wait_for(input_up, timeout=60, what="the input adapter")
        # the guest's input log runs once its reader and the PS/2 keyboard are up
        wait_for(lambda: "VMSIG-INPUT-READY" in guest.serial_text()
                 and "AT Translated Set 2 keyboard" in guest.serial_text(), timeout=60,
                 what="the guest's input reader and keyboard")
        with vm.lease("input"):
            vm.type("vmsig")
            vm.key("enter")
        # v m s i g: key codes 47 50 31 23 34, then enter 28, pressed (1) and released (0)
        want = [(47, 1), (47, 0), (50, 1), (50, 0), (31, 1), (31, 0), (23, 1), (23, 0), (34, 1), (34, 0),
                (28, 1), (28, 0)]

        def keys_seen():
            got = [(int(c), int(v)) for c, v in
                   re.findall(r"VMSIG-INPUT ev=\d+ type=1 code=(\d+) value=(\d+)", guest.serial_text())]
            got = [k for k in got if k[0] in (47, 50, 31, 23, 34, 28) and k[1] in (0, 1)]
            return got[-len(want):] == want and got

        try:
            wait_for(keys_seen, timeout=30, what="the typed keys in the guest's input log")
        except AssertionError:
            print("# guest serial (tail):", guest.serial_text()[-3000:])
            raise
