# SPDX-License-Identifier: MIT
"""pytest fixtures: a real vmsigd with stub VMs (vmsigd_harness.py, the
Python equivalent of tests/daemon/vmsigd_harness.h), always torn down."""

from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.normpath(os.path.join(HERE, "..", "..", "python"))
if SRC not in sys.path:
    sys.path.insert(0, SRC)

from vmsigd_harness import TIMEOUT, Daemon, HarnessError, wait_for  # noqa: E402

__all__ = ["HERE", "SRC", "TIMEOUT", "Daemon", "HarnessError", "wait_for"]


@pytest.fixture
def start_daemon():
    """A factory: start_daemon(extra_config) -> Daemon; all torn down after."""
    made = []

    def start(extra: str = "") -> Daemon:
        d = Daemon(extra)
        made.append(d)
        return d

    yield start
    for d in made:
        d.teardown()


@pytest.fixture
def daemon(start_daemon):
    """A vmsigd with the default config (root gets every capability)."""
    return start_daemon()


@pytest.fixture
def stub(daemon):
    """The daemon with one stub VM 'stub1' whose three adapters are attached."""
    import vmsig

    daemon.add_vm("stub1")
    with vmsig.connect(daemon.sock, name="fixture") as bus:
        bus.vm("stub1", wait=TIMEOUT).wait_ready(seams=0x0E, timeout=TIMEOUT)
    return daemon
