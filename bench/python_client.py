#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/python_client: the Python package (python/vmsig) against the C
client (libvmsig + libvmie, bench/pyclient/c_baseline.c), in the same run,
on the real vmsigd ($VMSIGD) with one stub VM:

  - events: a flooding control (tests/python/flood.py) takes and gives back
    the VM's input lease at a fixed pace; a C and a Python control, each in
    its own process, take every LEASE_GRANT/LEASE_REVOKE. Figure: CPU time
    per event of each consumer (its capacity in events per CPU-second);
  - command round trip: MOVE_ABS under the input lease, one at a time, each
    waited for (vm.move() against vmsig_client_send + wait);
  - 4 KiB read: guest-virtual reads through the memory context, safe mode
    (pread), translation cached (mem.read() against vmie_read_virt); CPU
    time per read of each process (wall time on a loaded box mostly counts
    the wait for a CPU).

Valid only if both consumers got every event, in order, every command was
acknowledged with 0, and both read the same page (checksum); otherwise
"INVALID: <reasons>" and exit 1. Goals: reads within 2x of C, events within
10x. --smoke: tiny sizes, the checks only, no figures against goals.

Env: VMSIGD, VMSIG_C_BASELINE (the C helper), VMSIG_LIBVMIE.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))

import vmsig  # noqa: E402
from vmsigd_harness import Daemon, child_env  # noqa: E402

PAGE_VA = 0xFFFFFFFF80200000  # the stub guest's banner page (include/vmsig/stub_guest.h)
TIMEOUT = 60.0
invalid: list = []


def cpu_ns() -> int:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return int((ru.ru_utime + ru.ru_stime) * 1e9)


def fnv(b: bytes) -> int:
    h = 1469598103934665603
    for x in b:
        h = ((h ^ x) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def kv(line: str) -> dict:
    return {k: v for k, _, v in (p.partition("=") for p in line.split()[1:])}


# ---- the Python consumer, run as a child: python_client.py --child-events SOCK VM N ----

def child_events(sock: str, vm: str, n: int) -> int:
    with vmsig.connect(sock, name="py-consumer") as bus:
        evs = bus.events(vm=vm, kinds=[vmsig.LeaseGrant, vmsig.LeaseRevoke])
        print("ready", flush=True)
        got = bad = 0
        seq = 0
        expect = vmsig.LeaseGrant
        cpu0 = 0
        while got < n:
            ev = evs.get(TIMEOUT)
            if ev is None:
                break
            if not got:
                cpu0 = cpu_ns()
            if type(ev) is not expect or ev.seq <= seq:
                bad += 1
            expect = vmsig.LeaseRevoke if expect is vmsig.LeaseGrant else vmsig.LeaseGrant
            seq = ev.seq
            got += 1
        print(f"events n={got} bad={bad} cpu_ns={cpu_ns() - cpu0 if got else 0}", flush=True)
    return 0


def events(d: Daemon, cbase: str, cycles: int, rate: int) -> tuple:
    n = 2 * cycles
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
    cons = [subprocess.Popen([cbase, "events", d.sock, "bench", str(n)], stdout=subprocess.PIPE, text=True,
                             env=child_env()),
            subprocess.Popen([sys.executable, __file__, "--child-events", d.sock, "bench", str(n)],
                             stdout=subprocess.PIPE, text=True, env=env)]
    flood = None
    try:
        for c in cons:
            if c.stdout.readline().strip() != "ready":
                invalid.append("an event consumer did not start")
                return 0.0, 0.0
        flood = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "python", "flood.py"), d.sock,
                                  "bench", str(cycles), str(rate)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True, env=env)
        if flood.stdout.readline().strip() != "ready":
            invalid.append("the flooding control did not start")
            return 0.0, 0.0
        flood.stdin.write("go\n")
        flood.stdin.flush()
        fout, _ = flood.communicate(timeout=TIMEOUT + cycles / max(rate, 1))
        if flood.returncode != 0:
            invalid.append(f"flood: {fout.strip()}")
        res = []
        for name, c in zip(("C", "Python"), cons):
            out, _ = c.communicate(timeout=TIMEOUT)
            r = kv(out.strip().splitlines()[-1]) if out.strip() else {}
            if c.returncode != 0 or int(r.get("n", -1)) != n or r.get("bad") != "0":
                invalid.append(f"{name} consumer got {r.get('n', '?')} of {n} events, "
                               f"{r.get('bad', '?')} out of order (exit {c.returncode})")
            res.append(int(r.get("cpu_ns", 0)) / max(n, 1))
        return res[0], res[1]
    finally:
        for p in cons + ([flood] if flood else []):
            if p.poll() is None:
                p.kill()
                p.wait()


def c_run(cbase: str, *args: str) -> dict:
    out = subprocess.run([cbase, *args], capture_output=True, text=True, timeout=TIMEOUT * 4, env=child_env())
    if out.returncode != 0:
        invalid.append(f"C baseline {args[0]}: {out.stderr.strip() or out.returncode}")
        return {}
    return kv(out.stdout.strip().splitlines()[-1])


def rtt(d: Daemon, cbase: str, n: int) -> tuple:
    c = c_run(cbase, "rtt", d.sock, "bench", str(n))
    if c and c.get("failed") != "0":
        invalid.append(f"C round trips: {c.get('failed')} of {n} refused")
    with vmsig.connect(d.sock, name="py-rtt") as bus:
        vm = bus.vm("bench")
        with vm.lease("input"):
            t0 = time.perf_counter_ns()
            try:
                for i in range(n):
                    vm.move(i & 0x7FFF, 1)
            except vmsig.VmsigError as e:
                invalid.append(f"Python round trip refused: {e}")
            t = time.perf_counter_ns() - t0
    return int(c.get("wall_ns", 0)) / n, t / n


def reads(d: Daemon, cbase: str, n: int) -> tuple:
    c = c_run(cbase, "read", d.sock, "bench", str(n), hex(PAGE_VA))
    if c and c.get("failed") != "0":
        invalid.append(f"C reads: {c.get('failed')} of {n} failed")
    with vmsig.connect(d.sock, name="py-read") as bus:
        mem = bus.vm("bench").memory(timeout=TIMEOUT)
        read = mem.read
        page = read(PAGE_VA, 4096)
        t0 = cpu_ns()
        for _ in range(n):
            page = read(PAGE_VA, 4096)
        t = cpu_ns() - t0
        if b"vmsig synthetic guest" not in page:
            invalid.append("the page read has no stub banner")
        if c and int(c.get("fnv", "0"), 16) != fnv(page):
            invalid.append("C and Python read different bytes")
        mem.close()
    return int(c.get("cpu_ns", 0)) / n, t / n


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--child-events":
        return child_events(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    smoke = "--smoke" in sys.argv[1:]
    if any(a not in ("--smoke",) for a in sys.argv[1:]) or "-h" in sys.argv:
        print(__doc__)
        return 0 if "-h" in sys.argv or "--help" in sys.argv else 2
    cbase = os.environ.get("VMSIG_C_BASELINE")
    if not cbase or not os.environ.get("VMSIGD"):
        print("INVALID: set VMSIGD and VMSIG_C_BASELINE (run through ctest or `make bench`)")
        return 1
    cycles, rate, n_rtt, n_read = (500, 5000, 200, 2000) if smoke else (20000, 5000, 5000, 200000)
    d = Daemon()
    try:
        d.add_vm("bench")
        with vmsig.connect(d.sock) as bus:
            bus.vm("bench", wait=TIMEOUT).wait_ready(seams=0x0E, memory=True, timeout=TIMEOUT)
        ev_c, ev_py = events(d, cbase, cycles, rate)
        rt_c, rt_py = rtt(d, cbase, n_rtt)
        rd_c, rd_py = reads(d, cbase, n_read)
    finally:
        d.teardown()
    if invalid:
        print("INVALID: " + "; ".join(invalid))
        return 1
    ev_ratio = ev_py / ev_c if ev_c else float("inf")
    rt_ratio = rt_py / rt_c if rt_c else float("inf")
    rd_ratio = rd_py / rd_c if rd_c else float("inf")
    print(f"python_client: the Python package against the C client, same run, stub VM"
          f"{' (smoke: sizes too small for figures)' if smoke else ''}")
    print(f"  events ({2 * cycles} at {2 * rate}/s): C {ev_c / 1000:.2f} us CPU/event "
          f"({1e9 / ev_c if ev_c else 0:,.0f} events/CPU-s), Python {ev_py / 1000:.2f} us "
          f"({1e9 / ev_py if ev_py else 0:,.0f}/CPU-s): Python costs {ev_ratio:.2f}x C")
    print(f"  command round trip ({n_rtt} MOVE_ABS): C {rt_c / 1000:.1f} us, Python {rt_py / 1000:.1f} us: "
          f"{rt_ratio:.2f}x C")
    print(f"  4 KiB read ({n_read}, safe mode): C {rd_c / 1000:.2f} us CPU, Python {rd_py / 1000:.2f} us: "
          f"{rd_ratio:.2f}x C")
    if not smoke:
        print(f"goal reads within 2x of C: {'met' if rd_ratio <= 2 else 'NOT met'} ({rd_ratio:.2f}x)")
        print(f"goal events within 10x of C: {'met' if ev_ratio <= 10 else 'NOT met'} ({ev_ratio:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
