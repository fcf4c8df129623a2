# SPDX-License-Identifier: MIT
"""The real TCG test guest for the pytest tests (label vm), started as
tests/vm/vm_guest.h does: -accel tcg, a private dir, a unique /dev/shm RAM
file, QEMU killed with the test (PR_SET_PDEATHSIG) and always cleaned up."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
from typing import Optional, Sequence

import pytest
from vmsigd_harness import child_env

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
            with contextlib.suppress(OSError):
                os.unlink(os.path.join("/dev/shm", name))
        except PermissionError:
            pass


class Guest:
    def __init__(self, name: str, env_dir: Optional[str] = None, extra: Sequence[str] = ()) -> None:
        """Boot the guest of $VMSIG_GUEST_DIR, or the kernel and initrd
        that env_dir/guest.env names (the base guest's System.map stays),
        with extra QEMU arguments."""
        gdir = os.environ.get("VMSIG_GUEST_DIR")
        if not gdir:
            pytest.fail("VMSIG_GUEST_DIR is not set (run through ctest)")
        env = {}
        with open(os.path.join(env_dir or gdir, "guest.env")) as f:
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
                "-qmp", f"unix:{self.qmp},server=on,wait=off", *extra]
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
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.shm)
        shutil.rmtree(self.dir, ignore_errors=True)
