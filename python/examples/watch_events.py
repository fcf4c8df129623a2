#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Log every vmsig event as one JSON object per line (JSON Lines).

    watch_events.py [--vm NAME] [--kinds STATUS,ROSTER,...] [--count N]
                    [--timeout S] [--asyncio] [--socket PATH]

Each line has the event's header fields (kind, kind_name, endpoint, vm,
source, priority, flags, corr, seq, ts_ns), its body fields, and
"retained": true for a replay of current state. --asyncio reads with
`async for` instead of `for` (same output)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import vmsig


def line(ev: vmsig.Event) -> str:
    return json.dumps(ev.to_dict(), separators=(",", ":"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--socket", help="vmsigd socket (default $VMSIG_SOCKET or /run/vmsig/vmsigd.sock)")
    ap.add_argument("--vm", help="only this VM (default: every VM, including later ones)")
    ap.add_argument("--kinds", help="comma-separated kinds, e.g. STATUS,ROSTER (default: all you may see)")
    ap.add_argument("--count", type=int, default=0, help="stop after N events")
    ap.add_argument("--timeout", type=float, help="stop after S seconds without an event")
    ap.add_argument("--asyncio", action="store_true", help="iterate with async for")
    a = ap.parse_args()
    kinds = a.kinds.split(",") if a.kinds else None
    n = 0
    try:
        with vmsig.connect(a.socket, name="watch_events.py") as bus:
            stream = bus.events(vm=a.vm, kinds=kinds, timeout=a.timeout)
            if a.asyncio:
                async def run() -> int:
                    k = 0
                    async for ev in stream:
                        print(line(ev), flush=True)
                        k += 1
                        if k == a.count:
                            break
                    return k
                n = asyncio.run(run())
            else:
                for ev in stream:
                    print(line(ev), flush=True)
                    n += 1
                    if n == a.count:
                        break
    except vmsig.VmsigError as e:
        print(f"watch_events: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    print(f"watch_events: {n} events", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
