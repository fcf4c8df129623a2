# SPDX-License-Identifier: MIT
"""The examples in python/examples run (against the stub): the watcher
prints one JSON object per event, with `for` and with `async for`; the
agent at least parses its arguments and reaches the daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import SRC, TIMEOUT

EX = os.path.join(SRC, "examples")
ENV = dict(os.environ, PYTHONPATH=SRC)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=ENV, capture_output=True, text=True,
                          timeout=TIMEOUT * 2)


def test_watcher_json_lines(stub):
    for mode in ([], ["--asyncio"]):
        out = run(os.path.join(EX, "watch_events.py"), "--socket", stub.sock, "--vm", "stub1", "--kinds",
                  "ROSTER,STATUS", "--count", "2", *mode)
        assert out.returncode == 0, out.stderr
        evs = [json.loads(ln) for ln in out.stdout.splitlines()]
        assert sorted(e["kind_name"] for e in evs) == ["ROSTER", "STATUS"]
        assert all(e["retained"] and e["vm"] == "stub1" for e in evs)


def test_agent_reaches_the_daemon(stub, tmp_path):
    smap = tmp_path / "System.map"
    smap.write_text("ffffffff80000000 T _text\nffffffff80200100 D init_uts_ns\n")
    out = run(os.path.join(EX, "type_and_read.py"), "--help")
    assert out.returncode == 0 and "--system-map" in out.stdout
    # the stub has no guest shell: the name never changes, the agent says so
    out = run(os.path.join(EX, "type_and_read.py"), "stub1", "--socket", stub.sock, "--system-map", str(smap),
              "--timeout", "1")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "stub1: <vmsig.Memory" in out.stdout and "nodename still" in out.stderr
    # a map without _text is refused before anything else, naming the file
    smap.write_text("ffffffff80200100 D init_uts_ns\n")
    out = run(os.path.join(EX, "type_and_read.py"), "stub1", "--socket", stub.sock, "--system-map", str(smap))
    assert out.returncode == 1 and f"{smap}: no symbol '_text'" in out.stderr, out.stderr
