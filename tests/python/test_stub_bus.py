# SPDX-License-Identifier: MIT
"""The vmsig package against a real vmsigd with stub VMs: roster, commands,
leases (released on exceptions), typed refusals carrying the daemon's reason,
memory and StaleContextError, event iteration (blocking and asyncio)."""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import sys
import threading

import pytest
from conftest import SRC, TIMEOUT, wait_for

import vmsig

BANNER_VA = 0xFFFFFFFF80200100  # include/vmsig/stub_guest.h
BANNER_GPA = 0x200100
BANNER = "vmsig synthetic guest 1.0"


def test_connect_roster_and_welcome(stub):
    with vmsig.connect(stub.sock, name="t-roster") as bus:
        assert bus.control_id > 0
        assert bus.caps == 0x3F  # root: every capability by default
        assert [v.name for v in bus.vms()] == ["stub1"]
        vm = bus.vm("stub1")
        assert vm.run_state == vmsig.RunState.RUNNING
        assert vm.seams == vmsig.Seam.MEMCTX | vmsig.Seam.INPUT | vmsig.Seam.VMHOST
        assert vm.status() == (vmsig.RunState.RUNNING, vm.status()[1])
        with pytest.raises(vmsig.NoSuchVM):
            bus.vm("nope")


def test_default_socket_from_environment(stub, monkeypatch):
    monkeypatch.setenv("VMSIG_SOCKET", stub.sock)
    with vmsig.connect() as bus:
        assert bus.path == stub.sock
    monkeypatch.delenv("VMSIG_SOCKET")
    assert vmsig.DEFAULT_SOCKET == "/run/vmsig/vmsigd.sock"  # vmsigctl's default


def test_input_commands_recorded(daemon, tmp_path):
    rec = tmp_path / "input.rec"
    daemon.add_vm("rec", f"input_options=record={rec}\n")
    with vmsig.connect(daemon.sock) as bus:
        vm = bus.vm("rec", wait=TIMEOUT).wait_ready(seams=0x0E, timeout=TIMEOUT)
        with vm.lease("input"):
            vm.type("aB")
            vm.key("ctrl+alt+del")
            vm.move(100, 200)
            vm.click("right")
            vm.scroll(-3)
        with pytest.raises(ValueError):
            vm.key("ctrl+nosuchkey")
        with pytest.raises(ValueError):
            vm.type("\u00e9")
    text = wait_for(lambda: rec.exists() and rec.read_text().count("\n") >= 16 and rec.read_text(),
                    what="the stub's input record")
    lines = text.splitlines()
    # a: press/release; B: shift, b, b, shift; ctrl alt delete and back
    keys = [ln for ln in lines if "KEY" in ln]
    assert len(keys) == 2 + 4 + 6, text
    assert any("MOVE_ABS" in ln and "100" in ln and "200" in ln for ln in lines), text
    assert any("BUTTON" in ln for ln in lines), text
    assert any("WHEEL" in ln and "y=-3" in ln for ln in lines), text


def test_lease_released_on_exception(stub):
    with vmsig.connect(stub.sock, name="holder") as a, vmsig.connect(stub.sock, name="other") as b:
        va, vb = a.vm("stub1"), b.vm("stub1")
        with pytest.raises(RuntimeError):
            with va.lease("input"):
                with pytest.raises(vmsig.LeaseHeldError) as ei:
                    with vb.lease("input"):
                        pass
                e = ei.value
                assert e.holder == "holder" and e.holder_id == a.control_id
                assert e.code == -errno.EBUSY and e.reason  # the daemon's text
                assert "holder" in e.reason or "held" in e.reason
                raise RuntimeError("boom")
        # released on the way out: the other control gets it now
        with vb.lease("input"):
            vb.move(1, 1)
        # and power commands take and give back the lease by themselves
        va.pause()
        vb.resume()


def test_paused_guard_resumes_on_error(stub):
    with vmsig.connect(stub.sock) as bus:
        vm = bus.vm("stub1")
        with pytest.raises(KeyError):
            with vm.paused():
                assert vm.status()[0] == vmsig.RunState.PAUSED
                raise KeyError("x")
        assert vm.status()[0] == vmsig.RunState.RUNNING
        vm.pause()
        with vm.paused():  # already paused: stays paused after
            pass
        assert vm.status()[0] == vmsig.RunState.PAUSED
        vm.resume()
        assert vm.reset() in (vmsig.RunState.RUNNING, vmsig.RunState.BOOTING)


def test_refusal_reasons(start_daemon):
    d = start_daemon("[uid:0]\ncaps = roster,status,memctx\n")
    d.add_vm("ro")
    with vmsig.connect(d.sock) as bus:
        vm = bus.vm("ro", wait=TIMEOUT).wait_ready(seams=0x0E, timeout=TIMEOUT)
        with pytest.raises(vmsig.PermissionDenied) as ei:
            vm.pause()
        assert ei.value.code == -errno.EPERM and "power" in ei.value.reason
        with pytest.raises(vmsig.PermissionDenied) as ei:
            vm.memory().write(BANNER_VA, b"x")
        assert "memwrite" in ei.value.reason
        assert vm.memory().read_str(BANNER_VA) == BANNER
        # a VM that left: commands name the daemon's reason
        d.remove_vm("ro")
        wait_for(lambda: (bus.poll(), not bus.vms())[1], what="the VM to leave")
        with pytest.raises(vmsig.NoSuchVM) as ei:
            vm.status()
        assert ei.value.code == -errno.ENOENT and "endpoint" in ei.value.reason


def test_refused_connection_carries_reason(daemon):
    # uid 65534 has no admission rule: ERROR -EACCES before HELLO is read
    code = ("import vmsig,sys\n"
            "try:\n vmsig.connect(sys.argv[1])\nexcept vmsig.ConnectionRefused as e:\n"
            " print(type(e).__name__, e.code, e.reason)\n")
    out = subprocess.run([sys.executable, "-c", code, daemon.sock], user=65534, group=65534,
                         env=dict(os.environ, PYTHONPATH=SRC), capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert out.stdout.startswith(f"ConnectionRefused {-errno.EACCES} "), out.stdout + out.stderr
    assert f"{-errno.EACCES} uid 65534 (gid 65534) is not admitted" in out.stdout  # verbatim


def test_memory_reads_and_writes(stub):
    with vmsig.connect(stub.sock) as bus:
        vm = bus.vm("stub1")
        with vm.memory() as mem:
            assert mem.os == "synthetic" and mem.paging == 4 and mem.kernel_base == 0xFFFFFFFF80000000
            assert mem.read_str(BANNER_VA) == BANNER
            assert mem.read(BANNER_VA, 5) == BANNER[:5].encode()
            assert mem.read_phys(BANNER_GPA, 5) == BANNER[:5].encode()
            t = mem.translate(BANNER_VA)
            assert t.gpa == BANNER_GPA and not t.user

            import ctypes

            class Head(ctypes.LittleEndianStructure):
                _pack_ = 1
                _fields_ = [("word", ctypes.c_char * 5), ("sp", ctypes.c_char)]

            h = mem.read_struct(BANNER_VA, Head)
            assert h.word == b"vmsig" and h.sp == b" "
            with pytest.raises(vmsig.GuestMemoryError) as ei:
                mem.read(0xFFFF800000000000, 16)
            assert ei.value.code == -errno.EFAULT
            with pytest.raises(vmsig.GuestMemoryError) as ei:
                mem.read(0x0000900000000000, 16)  # not canonical
            assert ei.value.code == -errno.ERANGE
            # inline write, then one with a SRC_PAYLOAD tail
            assert mem.write(BANNER_VA, b"VMSIG") == 5
            assert mem.read_str(BANNER_VA) == "VMSIG" + BANNER[5:]
            big = bytes(range(256)) * 8
            assert mem.write(BANNER_VA, big) == len(big)
            assert mem.read(BANNER_VA, len(big)) == big
            assert mem.write(BANNER_GPA, b"P", phys=True) == 1
            assert mem.read(BANNER_VA, 1) == b"P"
            # within a page (pread of the cached page), across pages and
            # large (libvmie), and mapped: all the same bytes as physical
            page_va, page_pa = BANNER_VA & ~0xFFF, BANNER_GPA & ~0xFFF
            for off, n in ((0, 4096), (0xFF8, 16), (0x10, 3 * 4096), (0, 1 << 17)):
                assert mem.read(page_va + off, n) == mem.read_phys(page_pa + off, n), (off, n)
            with vm.memory(mapped=True, check_interval=0) as mm:
                assert mm.read(page_va + 0xFF8, 16) == mem.read_phys(page_pa + 0xFF8, 16)
                assert mm.read_str(BANNER_VA).startswith("P")
        # a closed Memory refuses every call (never touches freed state)
        for call in (lambda: mem.read(BANNER_VA, 4), lambda: mem.read(BANNER_VA, 5000),
                     lambda: mem.read_str(BANNER_VA), lambda: mem.translate(BANNER_VA)):
            with pytest.raises(ValueError, match="closed"):
                call()
        assert mem.stale


def test_stale_context_after_reset(stub):
    """The context's epoch ends (the daemon re-attaches the memory adapter
    when the VM's file changes, as it re-probes after a guest reset): every
    use of the old Memory raises StaleContextError; a new one works."""
    with vmsig.connect(stub.sock) as bus:
        vm = bus.vm("stub1")
        mem = vm.memory()
        assert mem.read_str(BANNER_VA) == BANNER
        old = mem.epoch
        stub.add_vm("stub1", "memctx_options=retry_ms=7\n")

        def stale() -> bool:
            try:
                mem.read(BANNER_VA, 4)
                return False
            except vmsig.StaleContextError:
                return True

        wait_for(stale, what="the old context to go stale")
        assert mem.stale
        for call in (lambda: mem.read_str(BANNER_VA), lambda: mem.translate(BANNER_VA),
                     lambda: mem.read_phys(BANNER_GPA, 1), lambda: mem.write(BANNER_VA, b"x")):
            with pytest.raises(vmsig.StaleContextError) as ei:
                call()
            assert ei.value.epoch == old
        new = vm.memory(timeout=TIMEOUT)
        assert new.epoch > old
        assert new.read_str(BANNER_VA) == BANNER


def test_events_iterator_and_typed(stub):
    with vmsig.connect(stub.sock) as bus, vmsig.connect(stub.sock) as cmd:
        vm = bus.vm("stub1")
        with bus.events(vm=vm, kinds=[vmsig.Status, "LEASE_GRANT", "LEASE_REVOKE"]) as evs:
            first = evs.get(TIMEOUT)
            assert isinstance(first, vmsig.Status) and first.retained and first.vm == "stub1"
            cmd.vm("stub1").pause()
            seen = []
            for ev in evs:
                seen.append(ev)
                if isinstance(ev, vmsig.LeaseRevoke):
                    break
            kinds = [type(e).__name__ for e in seen]
            assert kinds[0] == "LeaseGrant" and kinds[-1] == "LeaseRevoke", kinds
            assert any(isinstance(e, vmsig.Status) and e.run_state == vmsig.RunState.PAUSED for e in seen)
            assert seen[0].holder_id == cmd.control_id and seen[0].lease == "power"
            assert seen[-1].to_dict()["kind_name"] == "LEASE_REVOKE"
        assert evs.get(0) is None or True  # closed stream: no error
        cmd.vm("stub1").resume()


def test_asyncio_iteration(stub):
    async def main() -> list:
        with vmsig.connect(stub.sock) as bus:
            vm = bus.vm("stub1")
            got = []

            def commander() -> None:
                with vmsig.connect(stub.sock) as c:
                    v = c.vm("stub1")
                    v.pause()
                    v.resume()

            t = None
            async for ev in bus.events(vm=vm, kinds=["STATUS"], timeout=TIMEOUT):
                got.append(ev)
                if t is None:  # the retained STATUS came: now change the state
                    t = threading.Thread(target=commander)
                    t.start()
                if len(got) == 3:
                    break
            t.join()
            # the loop stayed free while waiting
            await asyncio.sleep(0)
            return got

    got = asyncio.run(main())
    assert [e.run_state for e in got] == [1, 2, 1]
    assert got[0].retained and not got[1].retained


def test_asyncio_two_streams_one_bus(stub):
    async def main():
        with vmsig.connect(stub.sock) as bus, vmsig.connect(stub.sock) as c:
            s1 = bus.events(kinds=["ROSTER"], timeout=TIMEOUT)
            s2 = bus.events(vm="stub1", kinds=["STATUS"], timeout=TIMEOUT)

            async def take(s, n):
                out = []
                async for ev in s:
                    out.append(ev)
                    if len(out) == n:
                        return out

            async def drive():
                await asyncio.sleep(0.05)
                await asyncio.to_thread(lambda: (c.vm("stub1").pause(), c.vm("stub1").resume()))

            r = await asyncio.gather(take(s1, 3), take(s2, 3), drive())
            return r[0], r[1]

    rosters, statuses = asyncio.run(main())
    assert [e.run_state for e in statuses] == [1, 2, 1]
    assert all(isinstance(e, vmsig.Roster) for e in rosters)


def test_daemon_closes_on_protocol_violation(stub):
    import vmsig._wire as w
    with vmsig.connect(stub.sock) as bus:
        bus._send(w.subscribe(99, 0, 0))  # kinds 0 is a violation (§3.4)
        with pytest.raises(vmsig.ConnectionClosed) as ei:
            bus.vm("stub1").status()
        assert ei.value.code == -errno.EPROTO and ei.value.reason
        assert bus.closed


def test_shutdown_reason(stub):
    bus = vmsig.connect(stub.sock)
    try:
        with bus.events(kinds=["LEASE_REVOKE"]) as evs:
            with bus.vm("stub1").lease("input"):
                assert stub.stop() == 0
                revoke = evs.get(TIMEOUT)
                assert isinstance(revoke, vmsig.LeaseRevoke) and revoke.reason == 4
                with pytest.raises(vmsig.ConnectionClosed) as ei:
                    evs.get(TIMEOUT)
                assert ei.value.code == -errno.ESHUTDOWN
    finally:
        bus.close()


def test_subscription_rules_protocol_md_states(start_daemon):
    """docs/protocol.md §8.1: lease events with only a lease capability;
    ACT_ACK subscriptions deliver only your own; §3.7: the STATUS answering
    a query carries its corr."""
    d = start_daemon("[uid:0]\ncaps = input,status\n")
    d.add_vm("caps")
    with vmsig.connect(d.sock) as a, vmsig.connect(d.sock) as b:
        va, vb = a.vm(1), b.vm(1)  # no roster capability: by endpoint id
        with pytest.raises(vmsig.PermissionDenied) as ei:
            a.vms()
        def running() -> bool:
            try:
                return va.status()[0] == vmsig.RunState.RUNNING
            except vmsig.NotReady:
                return False

        wait_for(running, what="the stub to run")
        with pytest.raises(vmsig.PermissionDenied) as ei:
            a.events(vm=1, kinds=["ROSTER"])
        assert ei.value.code == -errno.EPERM and "capability" in ei.value.reason
        grants = a.events(vm=1, kinds=["LEASE_GRANT"])
        acks = a.events(vm=1, kinds=["ACT_ACK"])
        vb.move(5, 5)  # b's lease and b's ACK
        g = grants.get(TIMEOUT)
        assert isinstance(g, vmsig.LeaseGrant) and g.holder_id == b.control_id
        assert acks.get(0.3) is None  # b's ACT_ACKs never reach a
        state, reason = va.status()
        assert state == vmsig.RunState.RUNNING and reason  # matched by the query's corr
        own = acks.get(TIMEOUT)
        assert isinstance(own, vmsig.Ack) and own.peer == a.control_id
