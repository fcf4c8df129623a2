# SPDX-License-Identifier: MIT
"""A real vmsigd ($VMSIGD) in a private temp dir, the Python equivalent of
tests/daemon/vmsigd_harness.h: socket, trigger dir, config, audit file and
log; started and waited for until it logs "vmsigd: ready:"; always killed,
reaped and removed by teardown(). Used by the pytest fixtures (conftest.py)
and by bench/python_client.py; needs nothing but the standard library."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Callable, Optional


class HarnessError(RuntimeError):
    pass


TIMEOUT = 20.0  # generous: ASan builds and a loaded box are slow


def wait_for(pred: Callable[[], object], timeout: float = TIMEOUT, what: str = "condition") -> object:
    """Poll pred with a deadline (no fixed sleeps as synchronisation)."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def child_env() -> dict:
    """The environment for programs other than python3 (vmsigd, QEMU, C
    helpers): without LD_PRELOAD, which an ASan build sets for python3 only
    (its libvmie needs the ASan runtime; the C programs link their own)."""
    return {k: v for k, v in os.environ.items()
            if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM", "LD_PRELOAD")}


class Daemon:
    """A running vmsigd in a private directory."""

    def __init__(self, extra: str = "") -> None:
        binary = os.environ.get("VMSIGD")
        if not binary:
            raise HarnessError("VMSIGD is not set (the path of the vmsigd binary; run through ctest)")
        self.dir = tempfile.mkdtemp(prefix="vmsigd-py-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.sock = os.path.join(self.dir, "vmsigd.sock")
        self.trig = os.path.join(self.dir, "vms")
        self.conf = os.path.join(self.dir, "vmsigd.conf")
        self.audit = os.path.join(self.dir, "audit.log")
        self.log = os.path.join(self.dir, "vmsigd.log")
        os.mkdir(self.trig)
        with open(self.conf, "w") as f:
            f.write(f"[daemon]\nsocket = {self.sock}\ntrigger_dir = {self.trig}\n"
                    f"audit = file:{self.audit}\nsocket_mode = 0666\n{extra}\n")
        env = child_env()
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen([binary, "-c", self.conf], stdin=subprocess.DEVNULL, stdout=logf,
                                     stderr=subprocess.STDOUT, env=env, close_fds=True)
        logf.close()
        try:
            wait_for(lambda: self.proc.poll() is not None or "vmsigd: ready:" in self.log_text(),
                     what="vmsigd to be ready")
        except AssertionError:
            self.teardown()
            raise
        if self.proc.poll() is not None:
            text = self.log_text()
            self.teardown()
            raise HarnessError(f"vmsigd exited at start; its log:\n{text}")

    def log_text(self) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def audit_text(self) -> str:
        try:
            with open(self.audit, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def add_vm(self, name: str, extra: str = "", file: Optional[str] = None) -> None:
        """A stub VM: a trigger file written atomically (temp name, rename)."""
        file = file or name
        tmp = os.path.join(self.trig, f".{file}.new")
        with open(tmp, "w") as f:
            f.write(f"name={name}\ndriver=stub\n{extra}")
        os.rename(tmp, os.path.join(self.trig, file))

    def remove_vm(self, file: str) -> None:
        os.unlink(os.path.join(self.trig, file))

    def stop(self, timeout: float = TIMEOUT) -> Optional[int]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def teardown(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.dir.startswith("/tmp/vmsigd-py-"):
            shutil.rmtree(self.dir, ignore_errors=True)
