# SPDX-License-Identifier: MIT
"""A Python control keeps up with 10,000 events/s from the daemon, without
loss, for a bounded run: every LEASE_GRANT and LEASE_REVOKE a flooding
control causes arrives, in order, and the daemon never disconnects us."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import HERE, SRC, TIMEOUT

import vmsig

RATE = 5000  # lease cycles/s: two broadcast events each, 10,000 events/s
SECONDS = 3


def test_keeps_up_with_10k_events_per_second(stub):
    cycles = RATE * SECONDS
    with vmsig.connect(stub.sock, name="watcher") as bus:
        evs = bus.events(vm="stub1", kinds=[vmsig.LeaseGrant, vmsig.LeaseRevoke])
        flood = subprocess.Popen([sys.executable, os.path.join(HERE, "flood.py"), stub.sock, "stub1",
                                  str(cycles), str(RATE)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True, env=dict(os.environ, PYTHONPATH=SRC))
        try:
            assert flood.stdout.readline().strip() == "ready"
            flood.stdin.write("go\n")
            flood.stdin.flush()
            grants = revokes = 0
            last_seq = 0
            expect = vmsig.LeaseGrant
            while grants + revokes < 2 * cycles:
                ev = evs.get(TIMEOUT)
                assert ev is not None, f"stalled after {grants} grants, {revokes} revokes"
                assert isinstance(ev, expect), (grants, revokes, ev)
                assert ev.seq > last_seq
                last_seq = ev.seq
                if expect is vmsig.LeaseGrant:
                    grants += 1
                    expect = vmsig.LeaseRevoke
                else:
                    assert ev.reason == 1  # released
                    revokes += 1
                    expect = vmsig.LeaseGrant
            out, _ = flood.communicate(timeout=TIMEOUT * 3)
            assert flood.returncode == 0, out
            print(out.strip(), f"received {grants + revokes} events")
            assert f"cycles={cycles} acks={2 * cycles} failed=0" in out
            assert evs.get(0.2) is None  # nothing extra
        finally:
            if flood.poll() is None:
                flood.kill()
                flood.wait()
