# SPDX-License-Identifier: MIT
"""Protocol version 2 from Python against a real vmsigd with a stub VM:
writes from 64 KiB up travel through the connection's sealed staging memfd
(the ACK says "from the source fd"), smaller ones inline or as a tail; a
caller's own fd with an offset; version 1 (version_max=1) unchanged; bad
arguments refused before anything is sent. Every write is checked byte by
byte in guest RAM, read back through the MEMCTX fd."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import socket

import pytest
from conftest import TIMEOUT

import vmsig

KBASE = 0xFFFFFFFF80000000  # the stub's kernel image: VA = KBASE + GPA
TARGET_GPA = 0x300000
TARGET_VA = KBASE + TARGET_GPA
TARGET_LEN = 1 << 20  # GPA 0x300000..0x400000: plain RAM of the stub (no page tables, no banner)
FROM_FD = "from the source fd"
SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL


def pattern(n: int, seed: int) -> bytes:
    """n bytes that differ from write to write and from offset to offset."""
    return bytes((i * 7 + seed + (i >> 8)) & 0xFF for i in range(n))


def open_vm(sock: str, **kw):
    bus = vmsig.connect(sock, name="t-memwrite-fd", **kw)
    vm = bus.vm("stub1", wait=TIMEOUT)
    return bus, vm, vm.memory(timeout=TIMEOUT)


def test_version_2_negotiated(stub):
    with vmsig.connect(stub.sock) as bus:
        assert bus.version == 2 and bus.version_max == 2
    with vmsig.connect(stub.sock, version_max=1) as bus:
        assert bus.version == 1


def test_large_write_through_the_staging_memfd(stub):
    bus, vm, mem = open_vm(stub.sock)
    with bus, mem:
        for n, off in ((65536, 0), (bus.tail_max, 0), (100003, 0x1235)):
            data = pattern(n, n & 0xFF)
            ack = vm._memwrite(TARGET_VA + off, data, 0, False)
            assert ack.result == 0 and ack.value == n
            assert FROM_FD in ack.msg, ack.msg
            assert mem.read_phys(TARGET_GPA + off, n) == data, (n, off)
        # the public call, guest-physical
        data = pattern(70000, 9)
        assert mem.write(TARGET_GPA + 0x1000, data, phys=True) == len(data)
        assert mem.read(TARGET_VA + 0x1000, len(data)) == data
        # the staging memfd: tail_max bytes, sealed as the C client's
        assert os.fstat(bus._stage_fd).st_size == bus.tail_max
        assert fcntl.fcntl(bus._stage_fd, fcntl.F_GET_SEALS) == SEALS


def test_small_writes_stay_inline_or_tail(stub):
    bus, vm, mem = open_vm(stub.sock)
    with bus, mem:
        for n in (1, 440, 441, 4096, 65535):  # inline, inline, tail ... just below the threshold
            data = pattern(n, 3)
            ack = vm._memwrite(TARGET_VA, data, 0, False)
            assert ack.value == n and FROM_FD not in ack.msg, (n, ack.msg)
            assert mem.read_phys(TARGET_GPA, n) == data
        assert bus._stage_fd == -1  # never made


def test_staging_memfd_reused_with_the_right_bytes(stub):
    bus, vm, mem = open_vm(stub.sock)
    with bus, mem:
        fds = set()
        nfds = None
        for i, n in enumerate((65536, 1 << 20, 200000, 65536 + 1, 1 << 20, 131072)):
            data = pattern(n, 0x40 + i)
            off = (i * 0x3001) & 0xFFFFF
            off = min(off, TARGET_LEN - n)
            ack = vm._memwrite(TARGET_VA + off, data, 0, False)
            assert FROM_FD in ack.msg, ack.msg
            assert bus._stage_corr == 0  # free again: its ACK arrived
            assert mem.read_phys(TARGET_GPA + off, n) == data, (i, n, off)
            fds.add(bus._stage_fd)
            count = len(os.listdir("/proc/self/fd"))
            assert nfds is None or count == nfds  # no fd made or leaked per write
            nfds = count
        assert len(fds) == 1
        stage_fd = bus._stage_fd
    try:  # closed with the connection (the number may have been reused since)
        assert "vmsig-memwrite" not in os.readlink(f"/proc/self/fd/{stage_fd}")
    except FileNotFoundError:
        pass


def test_staging_memfd_not_reused_before_its_ack(stub):
    """While a write's ACK is outstanding (e.g. its wait timed out) the
    staging buffer is not touched: the next large write goes as a tail."""
    bus, vm, mem = open_vm(stub.sock)
    with bus, mem:
        vm._memwrite(TARGET_VA, pattern(65536, 1), 0, False)  # opens the staging memfd
        stage = bus._stage_map
        stage[:4] = b"KEEP"
        bus._stage_corr = 1 << 62  # as if a write using it still waited for its ACK
        data = pattern(300000, 2)
        ack = vm._memwrite(TARGET_VA, data, 0, False)
        assert FROM_FD not in ack.msg, ack.msg
        assert mem.read_phys(TARGET_GPA, len(data)) == data
        assert stage[:4] == b"KEEP"
        bus._stage_corr = 0
        ack = vm._memwrite(TARGET_VA, data, 0, False)
        assert FROM_FD in ack.msg and stage[:4] == data[:4]


def test_write_from_the_callers_fd_with_offset(stub, tmp_path):
    bus, vm, mem = open_vm(stub.sock)
    with bus, mem:
        src = pattern(300000, 0x77)
        # sealed memfd (the daemon maps it from 64 KiB up)
        mfd = os.memfd_create("t-src", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.write(mfd, src)
            fcntl.fcntl(mfd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
            for off, n in ((0, 65536), (4096 + 7, 200000), (299990, 10)):
                assert mem.write_fd(TARGET_VA + 0x10, mfd, n, offset=off) == n
                assert mem.read_phys(TARGET_GPA + 0x10, n) == src[off:off + n], (off, n)
            # an object with fileno(), read-only, unsealed (pread/splice path)
            with open(f"/proc/self/fd/{mfd}", "rb") as f:
                ack = vm._memwrite_fd(TARGET_GPA + 0x20000, f, 150000, 1234, 0, True)
                assert ack.value == 150000 and FROM_FD in ack.msg
            assert mem.read_phys(TARGET_GPA + 0x20000, 150000) == src[1234:1234 + 150000]
            # past the file's end: the daemon's ACK, nothing written, connection kept
            before = mem.read_phys(TARGET_GPA, 4096)
            with pytest.raises(vmsig.CommandError) as ei:
                mem.write_fd(TARGET_VA, mfd, 4096, offset=len(src) - 100)
            assert ei.value.code == -errno.ENODATA and "nothing written" in ei.value.reason
            assert mem.read_phys(TARGET_GPA, 4096) == before
            assert mem.write_fd(TARGET_VA, mfd, 5, offset=1) == 5
        finally:
            os.close(mfd)
        # a file in /dev/shm works as well
        shm = f"/dev/shm/vmsig-pytest-{os.getpid()}"
        try:
            with open(shm, "wb+") as f:
                f.write(src)
                f.flush()
                assert mem.write_fd(TARGET_VA, f, 70000, offset=3) == 70000
            assert mem.read_phys(TARGET_GPA, 70000) == src[3:70003]
        finally:
            os.unlink(shm)


def test_bad_arguments_are_refused_before_sending(stub, tmp_path):
    bus, vm, mem = open_vm(stub.sock)
    with bus, mem:
        mfd = os.memfd_create("t-bad", os.MFD_CLOEXEC)
        os.ftruncate(mfd, 4096)
        r, wfd = os.pipe()
        a, b = socket.socketpair()
        shm = f"/dev/shm/vmsig-pytest-bad-{os.getpid()}"
        try:
            with open(shm, "wb") as f:
                f.write(b"x" * 4096)
            wronly = os.open(shm, os.O_WRONLY | os.O_CLOEXEC)
            opath = os.open(shm, os.O_PATH | os.O_CLOEXEC)
            dirfd = os.open("/dev/shm", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            closed = os.dup(mfd)
            os.close(closed)
            with pytest.raises(OSError, match=f"fd {closed} cannot be the write's source") as ei:
                mem.write_fd(TARGET_VA, closed, 4096)  # before anything reuses the number
            assert ei.value.errno == errno.EBADF
            cases = [
                (dict(fd=-1), ValueError, "fd must be an open file descriptor"),
                (dict(fd="3"), TypeError, "fd must be a file descriptor"),
                (dict(fd=r), ValueError, f"fd {r} is a pipe or FIFO"),
                (dict(fd=a), ValueError, "is a socket"),
                (dict(fd=dirfd), ValueError, f"fd {dirfd} is not a regular file"),
                (dict(fd=wronly), ValueError, f"fd {wronly} is not open for reading"),
                (dict(fd=opath), ValueError, f"fd {opath} is an O_PATH fd"),
                (dict(length=0), ValueError, "length must be 1.."),
                (dict(length=bus.tail_max + 1), ValueError, "length must be 1.."),
                (dict(length=1.5), TypeError, "length must be an int"),
                (dict(offset=-1), ValueError, "offset must be"),
                (dict(offset=(1 << 64) - 10), ValueError, "offset must be"),
                (dict(va=-1), ValueError, "address must be"),
                (dict(cr3=1 << 64), ValueError, "cr3 must be"),
            ]
            with open(__file__, "rb") as f:  # not tmpfs (unless the tree is on one)
                if vmsig.bus._fstatfs_type(f.fileno()) != 0x01021994:
                    cases.append((dict(fd=f.fileno()), ValueError, "is not a memfd or tmpfs file"))
                for kw, exc, text in cases:
                    args = dict(va=TARGET_VA, fd=mfd, length=4096, offset=0, cr3=0)
                    args.update(kw)
                    with pytest.raises(exc, match=re.escape(text)):
                        mem.write_fd(args["va"], args["fd"], args["length"], offset=args["offset"],
                                     cr3=args["cr3"])
            with pytest.raises(ValueError, match="data: nothing to write"):
                mem.write(TARGET_VA, b"")
            with pytest.raises(ValueError, match="data: .* over the daemon's bound"):
                mem.write(TARGET_VA, bytes(bus.tail_max + 1))
            with pytest.raises(ValueError, match="address must be"):
                mem.write(-5, b"x" * 70000)
            with pytest.raises(ValueError, match="fd: pass an fd exactly when flags has HAS_FD"):
                bus.command(vmsig._wire.CMD_MEMWRITE, 1, vm.endpoint, bytes(24), fd=mfd)
            # nothing reached the daemon: the connection is fine
            assert not bus.closed
            assert mem.write_fd(TARGET_VA, mfd, 4096) == 4096
            for fd in (wronly, opath, dirfd):
                os.close(fd)
        finally:
            for fd in (mfd, r, wfd):
                os.close(fd)
            a.close()
            b.close()
            os.unlink(shm)


def test_version_1_path_unchanged(stub):
    bus, vm, mem = open_vm(stub.sock, version_max=1)
    with bus, mem:
        assert bus.version == 1
        for n in (100, 5000, 65536, bus.tail_max):
            data = pattern(n, 0x21)
            ack = vm._memwrite(TARGET_VA, data, 0, False)
            assert ack.value == n and FROM_FD not in ack.msg
            assert mem.read_phys(TARGET_GPA, n) == data
        assert bus._stage_fd == -1
        mfd = os.memfd_create("t-v1", os.MFD_CLOEXEC)
        try:
            os.ftruncate(mfd, 4096)
            with pytest.raises(vmsig.VmsigError, match="needs protocol version 2") as ei:
                mem.write_fd(TARGET_VA, mfd, 4096)
            assert ei.value.code == -errno.EOPNOTSUPP
            with pytest.raises(vmsig.VmsigError, match="needs version 2"):
                bus.command(vmsig._wire.CMD_MEMWRITE, 1, vm.endpoint, bytes(24), vmsig._wire.F_HAS_FD, fd=mfd)
        finally:
            os.close(mfd)
        assert not bus.closed and mem.write(TARGET_VA, b"ok") == 2
