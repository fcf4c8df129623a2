# SPDX-License-Identifier: MIT
"""Event source for streaming tests and the bench: a control that takes and
gives back a VM's input lease as fast as asked, pipelined, so that every
cycle makes two broadcast events (LEASE_GRANT, LEASE_REVOKE).

    python3 flood.py SOCKET VM CYCLES RATE   (RATE cycles/s, 0 = no pacing)

Prints "ready" once connected, waits for a line on stdin, floods, then
prints "done cycles=N acks=M failed=K" once every ACT_ACK is in."""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))

import vmsig  # noqa: E402
import vmsig._wire as w  # noqa: E402

WINDOW = 512


def main() -> int:
    sock, vm, cycles, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    bus = vmsig.connect(sock, name="flood")
    ep = bus.vm(vm).endpoint
    acks = bus.events(vm=ep, kinds=["ACT_ACK"])
    print("ready", flush=True)
    sys.stdin.readline()
    acq = w.event(w.LEASE_ACQUIRE, w.SRC_CORE, ep, 1, w.lease_body(0), priority=w.PRIO_URGENT)
    rel = w.event(w.LEASE_RELEASE, w.SRC_CORE, ep, 2, w.lease_body(0), priority=w.PRIO_URGENT)
    pair = acq + rel
    tick = 0.005
    per_tick = max(1, int(rate * tick)) if rate > 0 else 64
    t0 = time.monotonic()
    sent = got = failed = 0
    while sent < cycles:
        n = min(per_tick, cycles - sent)
        # at most WINDOW commands unanswered: our own ACKs must never pile
        # up in the daemon (it disconnects a control that does not read)
        while 2 * (sent + n) - got > WINDOW:
            ev = acks.get(30)
            if ev is None:
                break
            got += 1
            failed += ev.result != 0
        bus._send(pair * n)
        sent += n
        bus.poll()
        while acks.pending():
            ev = acks.get(0)
            got += 1
            failed += ev.result != 0
        if rate > 0:
            ahead = t0 + sent / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    while got < 2 * cycles:
        ev = acks.get(30)
        if ev is None:
            break
        got += 1
        failed += ev.result != 0
    print(f"done cycles={sent} acks={got} failed={failed} seconds={time.monotonic() - t0:.3f}", flush=True)
    bus.close()
    return 0 if got == 2 * cycles and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
