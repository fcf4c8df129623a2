# SPDX-License-Identifier: MIT
"""The package against a real TCG guest through the real vmsigd (label vm):
read the guest kernel's linux_banner through vm.memory(), by number
(System.map address, nokaslr) and by name through vmsig.Symbols with the
kernel base of the MEMCTX (slide 0 under nokaslr), and type into the guest and find the keys in the input
log it prints on its serial console (tests/vm/README.md).

The guest is started as tests/vm/vm_guest.h does: -accel tcg, a private dir,
a unique /dev/shm RAM file, QEMU killed with the test (PR_SET_PDEATHSIG) and
always cleaned up."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import tempfile

import pytest
from conftest import wait_for
from vmsigd_harness import child_env

import vmsig

SHM_PREFIX = "vmsig-test-"
BOOT_TIMEOUT = 180.0


def _pdeathsig() -> None:
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _sweep_shm() -> None:
    """RAM files of test processes that no longer exist (as vm_guest.h)."""
    for name in os.listdir("/dev/shm"):
        if not name.startswith(SHM_PREFIX):
            continue
        parts = name.split("-")
        try:
            pid = int(parts[-2])
            os.kill(pid, 0)
        except (ValueError, IndexError):
            continue
        except ProcessLookupError:
            with __import__("contextlib").suppress(OSError):
                os.unlink(os.path.join("/dev/shm", name))
        except PermissionError:
            pass


class Guest:
    def __init__(self, name: str) -> None:
        gdir = os.environ.get("VMSIG_GUEST_DIR")
        if not gdir:
            pytest.fail("VMSIG_GUEST_DIR is not set (run through ctest)")
        env = {}
        with open(os.path.join(gdir, "guest.env")) as f:
            for line in f:
                k, _, v = line.strip().partition("=")
                env[k] = v
        self.gdir = gdir
        self.env = env
        _sweep_shm()
        self.dir = tempfile.mkdtemp(prefix=f"vmsig-vm-{name}.", dir="/tmp")
        self.qmp = os.path.join(self.dir, "qmp.sock")
        self.serial = os.path.join(self.dir, "serial.log")
        self.shm = f"/dev/shm/{SHM_PREFIX}py{name}-{os.getpid()}-0"
        qemu = os.environ.get("VMSIG_QEMU", "qemu-system-x86_64")
        argv = [qemu, "-accel", "tcg", "-m", "256M", "-smp", "1", "-no-reboot", "-display", "none",
                "-nodefaults", "-monitor", "none",
                "-object", f"memory-backend-file,id=ram0,size=256M,mem-path={self.shm},share=on",
                "-machine", "q35,memory-backend=ram0", "-kernel", env["KERNEL"], "-initrd", env["INITRD"],
                "-append", "console=ttyS0 nokaslr panic=-1", "-serial", f"file:{self.serial}",
                "-qmp", f"unix:{self.qmp},server=on,wait=off"]
        out = open(os.path.join(self.dir, "qemu.out"), "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     preexec_fn=_pdeathsig, env=child_env())
        out.close()

    def serial_text(self) -> str:
        try:
            with open(self.serial, "rb") as f:
                return f.read().decode("latin-1")
        except FileNotFoundError:
            return ""

    def system_map(self) -> str:
        return os.path.join(self.gdir, "System.map")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        with __import__("contextlib").suppress(FileNotFoundError):
            os.unlink(self.shm)
        shutil.rmtree(self.dir, ignore_errors=True)


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
