# SPDX-License-Identifier: MIT
"""The client's side of docs/protocol.md: a fake daemon sends what the real
one never does, and the package must close and raise ProtocolError (or the
typed refusal), never hand out a wrong event."""

from __future__ import annotations

import array
import os
import socket
import struct
import tempfile
import threading
from typing import Callable

import pytest
from conftest import TIMEOUT

import vmsig
import vmsig._wire as w

WELCOME = w.PREFIX.pack(28, w.WELCOME, 0) + struct.pack("<HHIIIIII", 1, 0, 7, 0x3F, 0, 456, 1 << 20, 1 << 20)
WELCOME_V2 = w.PREFIX.pack(28, w.WELCOME, 0) + struct.pack("<HHIIIIII", 2, 0, 7, 0x3F, 0, 456, 1 << 20, 1 << 20)


def event(kind: int, body: bytes, flags: int = 0, ep: int = 1, source: int = 0) -> bytes:
    return (w.PREFIX.pack(56 + len(body), w.EVENT, 0)
            + w.HDR.pack(kind, source, 0, 64, 0, flags, ep, 0, 0, 1, 0, 0, len(body), 0) + body)


def roster(name: bytes = b"vm1\0") -> bytes:
    return event(w.ROSTER, struct.pack("<BBBBI", 1, 0, 1, 0, 0) + name.ljust(64, b"\0")[:64])


def reply(corr: int) -> bytes:
    return w.PREFIX.pack(176, w.REPLY, 0) + struct.pack("<QHHi", corr, 5, 0, 0) + bytes(160)


class FakeDaemon:
    """Accepts one client, reads its HELLO, then runs script(conn)."""

    def __init__(self, script: Callable[[socket.socket], None]) -> None:
        self.dir = tempfile.mkdtemp(prefix="vmsig-fake-")
        self.path = os.path.join(self.dir, "s")
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(self.path)
        self.srv.listen(1)
        self.script = script
        self.hello = b""
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self) -> None:
        conn, _ = self.srv.accept()
        conn.settimeout(TIMEOUT)
        try:
            hello = b""
            while len(hello) < 84:
                hello += conn.recv(84 - len(hello))
            assert hello[4:6] == b"\x01\x00" and hello[8:12] == b"VMSG"
            self.hello = hello
            self.script(conn)
            # wait for the client to close
            while conn.recv(4096):
                pass
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.srv.close()
        self.t.join(TIMEOUT)
        os.unlink(self.path)
        os.rmdir(self.dir)


def welcome_then(*frames: bytes, fd: int = -1, fd_frame: int = -1, welcome: bytes = WELCOME):
    """A script: WELCOME, REPLY to the client's roster SUBSCRIBE, then frames
    (frame number fd_frame carrying fd)."""

    def script(conn: socket.socket) -> None:
        conn.sendall(welcome)
        sub = conn.recv(32)
        corr = struct.unpack_from("<Q", sub, 8)[0]
        conn.sendall(reply(corr))
        for i, f in enumerate(frames):
            if i == fd_frame:
                conn.sendmsg([f], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
            else:
                conn.sendall(f)

    return script


@pytest.fixture
def fake():
    made = []

    def make(script):
        d = FakeDaemon(script)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


def expect_violation(path: str, match: str) -> None:
    """Connecting (which reads the roster replay) or the next call fails."""
    bus = None
    with pytest.raises(vmsig.ProtocolError, match=match):
        bus = vmsig.connect(path, timeout=TIMEOUT)
        bus.vm("never-sent", wait=TIMEOUT)
    if bus is not None:
        assert bus.closed
        with pytest.raises(vmsig.ProtocolError):
            bus.vms()  # a closed bus keeps saying why
        bus.close()


def test_error_instead_of_welcome(fake):
    msg = b"uid 1234 is not admitted"
    d = fake(lambda c: c.sendall(w.PREFIX.pack(168, w.ERROR, 0) + struct.pack("<iI", -13, 0)
                                 + msg.ljust(160, b"\0")))
    with pytest.raises(vmsig.ConnectionRefused) as ei:
        vmsig.connect(d.path, timeout=TIMEOUT)
    assert ei.value.code == -13 and ei.value.reason == msg.decode()


def test_bad_welcome(fake):
    bad = bytearray(WELCOME)
    bad[8] = 3  # version 3: outside the 1..2 offered
    d = fake(lambda c: c.sendall(bytes(bad)))
    with pytest.raises(vmsig.ProtocolError, match="WELCOME with version 3, outside the 1..2"):
        vmsig.connect(d.path, timeout=TIMEOUT)
    bad[8] = 1
    bad[24] = 0xC9  # body_max 457
    d = fake(lambda c: c.sendall(bytes(bad)))
    with pytest.raises(vmsig.ProtocolError, match="malformed WELCOME"):
        vmsig.connect(d.path, timeout=TIMEOUT)


def test_hello_offers_versions_1_to_2(fake):
    """HELLO offers 1..2 (§3.1); the WELCOME's version is bus.version."""
    v2 = bytearray(WELCOME)
    v2[8] = 2
    d = fake(welcome_then(roster(), fd=-1))
    with vmsig.connect(d.path, timeout=TIMEOUT) as bus:
        assert bus.version == 1  # a version-1 daemon answers 1: nothing else changes
        assert bus.vm("vm1", wait=TIMEOUT).name == "vm1"
    assert struct.unpack_from("<IHH", d.hello, 8) == (w.MAGIC, 1, 2)

    def v2_script(conn: socket.socket) -> None:
        conn.sendall(bytes(v2))
        sub = conn.recv(32)
        conn.sendall(reply(struct.unpack_from("<Q", sub, 8)[0]))

    d = fake(v2_script)
    with vmsig.connect(d.path, timeout=TIMEOUT) as bus:
        assert bus.version == 2


def test_version_max_1_refuses_a_version_2_welcome(fake):
    v2 = bytearray(WELCOME)
    v2[8] = 2
    d = fake(lambda c: c.sendall(bytes(v2)))
    with pytest.raises(vmsig.ProtocolError, match="version 2, outside the 1..1"):
        vmsig.connect(d.path, timeout=TIMEOUT, version_max=1)
    assert struct.unpack_from("<IHH", d.hello, 8) == (w.MAGIC, 1, 1)
    for bad in (0, 3, "2"):
        with pytest.raises(ValueError, match="version_max must be 1 or 2"):
            vmsig.connect(d.path, version_max=bad)  # type: ignore[arg-type]


def test_eof_before_welcome(fake):
    d = fake(lambda c: c.shutdown(socket.SHUT_WR))
    with pytest.raises(vmsig.ConnectionClosed) as ei:
        vmsig.connect(d.path, timeout=TIMEOUT)
    assert ei.value.code == 0


def test_unknown_frame_type(fake):
    d = fake(welcome_then(w.PREFIX.pack(0, 9, 0)))
    expect_violation(d.path, "frame type 9")


def test_wrong_length(fake):
    d = fake(welcome_then(w.PREFIX.pack(175, w.REPLY, 0) + bytes(175)))
    expect_violation(d.path, "175 bytes")


def test_nonzero_reserved_header(fake):
    f = bytearray(roster())
    f[8 + 5] = 1  # reserved0
    d = fake(welcome_then(bytes(f)))
    expect_violation(d.path, "reserved")


def test_command_kind_from_daemon(fake):
    d = fake(welcome_then(event(w.KEY, bytes(20))))
    expect_violation(d.path, "kind 35")


def test_unterminated_string(fake):
    d = fake(welcome_then(roster(b"x" * 64)))
    expect_violation(d.path, "unterminated")


def test_memctx_has_fd_without_fd(fake):
    body = struct.pack("<QQBBBBI", 1, 0x1000, 1, 4, 3, 0, 0) + bytes(384)
    d = fake(welcome_then(roster(), event(w.MEMCTX, body, flags=w.F_HAS_FD)))
    expect_violation(d.path, "without its fd")


@pytest.mark.parametrize("welcome", [WELCOME, WELCOME_V2], ids=["v1", "v2"])
def test_fd_on_a_frame_without_has_fd(fake, welcome):
    """Version 2 lets the client send fds; s->c the rules stay those of v1 (§6)."""
    r, wfd = os.pipe()
    try:
        d = fake(welcome_then(roster(), roster(b"vm2\0"), fd=r, fd_frame=0, welcome=welcome))
        expect_violation(d.path, "carries none")
    finally:
        os.close(r)
        os.close(wfd)


def test_writable_fd(fake):
    r, wfd = os.pipe()
    try:
        body = struct.pack("<QQBBBBI", 1, 0x1000, 1, 4, 3, 0, 0) + bytes(384)
        d = fake(welcome_then(roster(), event(w.MEMCTX, body, flags=w.F_HAS_FD), fd=wfd, fd_frame=1))
        expect_violation(d.path, "read-only")
    finally:
        os.close(r)
        os.close(wfd)


def test_reserved_bytes_of_up_bodies_are_ignored(fake):
    """§5.2: a client ignores reserved bytes of UP bodies (a later daemon may
    use them, e.g. the kernel base in MEMCTX)."""
    body = struct.pack("<BBBBI", 1, 0, 1, 7, 0xFFFF) + b"vm1".ljust(64, b"\0")
    d = fake(welcome_then(event(w.ROSTER, body)))
    with vmsig.connect(d.path, timeout=TIMEOUT) as bus:
        assert bus.vm("vm1", wait=TIMEOUT).name == "vm1"
