# SPDX-License-Identifier: MIT
"""A connection to vmsigd (:class:`Bus`), its VMs (:class:`VM`) and event
streams (:class:`EventStream`).

One Bus is one socket and is not thread-safe: use it from one thread (or one
asyncio loop), and open another connection for another thread. Events that
arrive while a command waits for its answer are kept for the streams that
want them, so commands and event iteration mix freely.
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import copy
import errno
import ctypes
import fcntl
import mmap
import os
import select
import socket
import stat
import time
from typing import (AsyncIterator, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Set,
                    Tuple, Union)

from . import _vgpu
from . import _wire as w
from . import keys
from .errors import (ConnectionClosed, ConnectionRefused, FrameError, NoSuchVM, NotReady, PermissionDenied,
                     ProtocolError, VmsigError, command_error, strerror)
from .events import (EVENT_CLASSES, LEASE_CLASSES, Event, Memctx, Roster, RunState, Status, decode)
from .frame import Frame, FrameSource, frame_error
from .memory import HasFileno, Memory

DEFAULT_SOCKET = "/run/vmsig/vmsigd.sock"
DEFAULT_TIMEOUT = 5.0
_RECV = 1 << 16
_CMSG = socket.CMSG_SPACE(4 * array.array("i").itemsize)
_MSG_CMSG_CLOEXEC = getattr(socket, "MSG_CMSG_CLOEXEC", 0x40000000)
_TMPFS_MAGIC = 0x01021994
_STAGE_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL

KindSpec = Union[None, str, int, type, Iterable[Union[str, int, type]]]
VMSpec = Union[None, str, int, "VM"]

_POWER_OPS = {"on": 1, "off": 2, "reset": 3, "pause": 4, "resume": 5, "powerdown": 6}
_KIND_CAPS = {w.ROSTER: w.CAP_ROSTER, w.MEMCTX: w.CAP_MEMCTX, w.STATUS: w.CAP_STATUS,
              w.DIAG: w.CAP_STATUS, w.ACT_ACK: -1, w.LEASE_DENY: -1,
              w.LEASE_GRANT: w.CAP_ROSTER | w.CAP_INPUT | w.CAP_POWER | w.CAP_MEMWRITE,
              w.LEASE_REVOKE: w.CAP_ROSTER | w.CAP_INPUT | w.CAP_POWER | w.CAP_MEMWRITE}


def kinds_mask(kinds: KindSpec) -> int:
    """A SUBSCRIBE kinds mask from names (``"STATUS"``), numbers or event
    classes (``vmsig.Status``); None = every UP kind."""
    if kinds is None:
        return w.UP_MASK
    if isinstance(kinds, (str, int, type)):
        kinds = [kinds]
    mask = 0
    names = {v: k for k, v in w.KIND_NAMES.items()}
    for k in kinds:
        if isinstance(k, type):
            kv = EVENT_CLASSES.get(k)
        elif isinstance(k, str):
            kv = names.get(k.upper())
        else:
            kv = k
        if kv not in w.UP_KINDS:
            raise ValueError(f"not an event kind a control can receive: {k!r}")
        mask |= 1 << kv
    return mask


class _Sub:
    """One SUBSCRIBE endpoint value: the kinds each user asked for."""

    def __init__(self) -> None:
        self.users: List[int] = []  # kind masks, one per user

    @property
    def mask(self) -> int:
        m = 0
        for u in self.users:
            m |= u
        return m


class _MemState:
    __slots__ = ("epoch", "valid", "fd", "body")

    def __init__(self) -> None:
        self.epoch = 0
        self.valid = False
        self.fd = -1
        self.body: Optional[Memctx] = None


class Bus:
    """A control's connection to vmsigd. Make one with :func:`vmsig.connect`.

    Attributes from the daemon's WELCOME: ``version`` (the protocol version
    negotiated: 2 lets memory writes take their source from a memfd, 1 with
    an older vmsigd or ``version_max=1``), ``control_id``, ``caps`` (bit
    set, see ``vmsig.CAP_*``), ``uid``, ``tail_max`` (largest memory write
    in one command), ``queue_bytes``.
    """

    def __init__(self, path: Optional[str] = None, name: str = "vmsig-python",
                 timeout: float = DEFAULT_TIMEOUT, version_max: int = w.VERSION_MAX) -> None:
        if version_max not in (1, 2):
            raise ValueError(f"version_max must be 1 or 2, got {version_max!r}")
        self.path = path or os.environ.get("VMSIG_SOCKET") or DEFAULT_SOCKET
        self.name = name
        self.timeout = timeout
        self.version_max = version_max
        self.version = 0
        self._sock: Optional[socket.socket] = None
        self._rbuf = bytearray()
        self._rpos = 0
        self._rx_base = 0  # stream offset of _rbuf[0]
        self._fds: Deque[Tuple[int, int, int]] = collections.deque()  # (fd, lo, hi)
        self._closed: Optional[VmsigError] = None
        self._corr = 0
        self._last_corr = 0
        self._replies: Dict[int, Tuple[int, str]] = {}
        self._acks: Dict[int, Event] = {}
        self._wanted: Set[int] = set()  # corrs whose ACK / DENY / STATUS we keep
        self._denies: Dict[int, Event] = {}
        self._answers: Dict[int, Event] = {}
        self._streams: List["EventStream"] = []
        self._subs: Dict[int, _Sub] = {}
        self._names: Dict[int, str] = {}
        self._roster: Dict[int, Roster] = {}
        self._status: Dict[int, Status] = {}
        self._mem: Dict[int, _MemState] = {}
        self._frames: Dict[int, FrameSource] = {}  # per VM: the producer found, kept per epoch
        self._held: Dict[Tuple[int, int], int] = {}  # (ep, class) -> nesting depth
        self._waiters: Set[asyncio.Future] = set()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._poller = select.poll()
        self._memctx_due = 0
        # the staging memfd of version-2 writes (tail_max bytes, sealed, mapped);
        # _stage_corr: the write using it whose ACK has not arrived (0: free)
        self._stage_fd = -1
        self._stage_map: Optional[mmap.mmap] = None
        self._stage_corr = 0
        self._connect()

    # ---- connection ----

    def _connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        s.settimeout(self.timeout)
        try:
            s.connect(self.path)
        except OSError as e:
            s.close()
            hint = " (is vmsigd running? set VMSIG_SOCKET or pass the path)" \
                if e.errno in (errno.ENOENT, errno.ECONNREFUSED) else ""
            raise ConnectionRefused(f"cannot connect to {self.path}: {e.strerror}{hint}",
                                    -(e.errno or errno.EIO)) from None
        s.setblocking(False)
        self._sock = s
        self._fileno = s.fileno()
        self._poller.register(self._fileno, select.POLLIN)
        try:
            self._send(w.hello(self.name, self.version_max))
        except ConnectionClosed:
            pass  # a refusal is already in our receive buffer (§4.1)
        deadline = time.monotonic() + self.timeout
        while True:
            frame = self._next_raw(deadline)
            if frame is None:
                self.close()
                raise ConnectionRefused(f"no answer from vmsigd at {self.path} within {self.timeout} s",
                                        -errno.ETIMEDOUT)
            ftype, payload = frame
            try:
                if ftype == w.WELCOME:
                    (self.version, self.control_id, self.caps, self.uid, _bm, self.tail_max,
                     self.queue_bytes) = w.decode_welcome(payload, self.version_max)
                    break
                if ftype == w.ERROR:
                    code, msg = w.decode_error(payload)
            except ProtocolError as e:
                self._fail(e)
                raise
            if ftype == w.ERROR:
                self.close()
                raise ConnectionRefused(msg or f"vmsigd refused the connection: {strerror(code)}", code)
            self._violation(f"vmsigd sent frame type {ftype} before WELCOME")
        if self.caps & w.CAP_ROSTER:
            self._sub_add(0, 1 << w.ROSTER)  # for vms() and names; kept

    def close(self) -> None:
        """Close the connection (the daemon ends this control's leases)."""
        if self._sock is not None:
            with contextlib.suppress(Exception):
                self._poller.unregister(self._fileno)
            self._sock.close()
            self._sock = None
        if self._closed is None:
            self._closed = ConnectionClosed("the connection is closed", 0)
        while self._fds:
            os.close(self._fds.popleft()[0])
        self._stage_close()
        for m in self._mem.values():
            m.valid = False  # a closed bus learns of no reset: nothing is current
            if m.fd >= 0:
                os.close(m.fd)
                m.fd = -1
        for src in self._frames.values():
            src.close()
        self._frames.clear()
        self._held.clear()
        self._wake()

    @property
    def closed(self) -> bool:
        return self._sock is None

    def __enter__(self) -> "Bus":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> "Bus":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"control {self.control_id}"
        return f"<vmsig.Bus {self.path} {state}>"

    def _violation(self, why: str) -> None:
        err = ProtocolError(why)
        self._fail(err)
        raise err

    def _fail(self, err: VmsigError) -> None:
        self.close()
        self._closed = err

    def _raise_closed(self) -> None:
        raise self._closed if self._closed else ConnectionClosed("the connection is closed")

    # ---- I/O ----

    def _send(self, data: bytes) -> None:
        """Send whole frames; keeps reading while the socket is full."""
        view = memoryview(data)
        while view:
            if self._sock is None:
                self._raise_closed()
            try:
                n = self._sock.send(view, socket.MSG_NOSIGNAL)
                view = view[n:]
            except BlockingIOError:
                self._wait_for_room()
            except (BrokenPipeError, ConnectionResetError):
                raise ConnectionClosed("vmsigd closed the connection", -errno.EPIPE) from None

    def _wait_for_room(self) -> None:
        """The socket is full: wait for room, reading meanwhile, so that
        vmsigd's answers cannot fill our receive buffer and stall both."""
        p = select.poll()
        p.register(self._fileno, select.POLLIN | select.POLLOUT)
        for _fd, ev in p.poll(self.timeout * 1000):
            if ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
                self._recv()

    def _send_fd(self, data: bytes, fd: int) -> None:
        """Send one frame with fd attached to its first byte (§6). _send
        returns only once everything is written, so nothing queued before
        this frame is left: the fd cannot land on an earlier frame."""
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]).tobytes())]
        while True:
            if self._sock is None:
                self._raise_closed()
            try:
                n = self._sock.sendmsg([data], anc, socket.MSG_NOSIGNAL)
                break
            except BlockingIOError:  # nothing went, not the fd either
                self._wait_for_room()
            except (BrokenPipeError, ConnectionResetError):
                raise ConnectionClosed("vmsigd closed the connection", -errno.EPIPE) from None
        if n < len(data):
            self._send(data[n:])  # the fd went with the first byte

    def _stage(self) -> Optional[mmap.mmap]:
        """The staging memfd's mapping if it is free (opened on first use);
        None while a write using it waits for its ACK, or if it cannot be
        made (the caller then sends a tail)."""
        if self._stage_corr:
            return None
        if self._stage_map is None:
            fd = -1
            try:
                fd = os.memfd_create("vmsig-memwrite", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
                os.ftruncate(fd, self.tail_max)
                # sealed so the daemon maps it (fast path) and it can never shrink under a copy
                fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _STAGE_SEALS)
                self._stage_map = mmap.mmap(fd, self.tail_max, mmap.MAP_SHARED,
                                            mmap.PROT_READ | mmap.PROT_WRITE)
            except (OSError, AttributeError):
                if fd >= 0:
                    os.close(fd)
                return None
            self._stage_fd = fd
        return self._stage_map

    def _stage_close(self) -> None:
        if self._stage_map is not None:
            self._stage_map.close()
            self._stage_map = None
        if self._stage_fd >= 0:
            os.close(self._stage_fd)
            self._stage_fd = -1
        self._stage_corr = 0

    def _recv(self) -> bool:
        """One recvmsg. False when nothing was there; raises at EOF."""
        try:
            data, anc, flags, _ = self._sock.recvmsg(_RECV, _CMSG, _MSG_CMSG_CLOEXEC)
        except BlockingIOError:
            return False
        except ConnectionResetError:
            data, anc, flags = b"", [], 0
        lo = self._rx_base + len(self._rbuf)
        got: List[int] = []
        for level, typ, cdata in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                a = array.array("i")
                a.frombytes(cdata[:len(cdata) - len(cdata) % a.itemsize])
                got.extend(a)
        if flags & socket.MSG_CTRUNC or len(got) > 1:
            for fd in got:
                os.close(fd)
            self._violation("vmsigd sent more than one fd with one message (or they were truncated)")
        if got:
            fd = got[0]
            if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY:
                os.close(fd)
                self._violation("vmsigd sent an fd that is not read-only")
            self._fds.append((fd, lo, lo + len(data)))
        if not data:
            if self._closed is None:
                self._fail(ConnectionClosed("vmsigd closed the connection without a reason "
                                            "(it stopped or crashed)", 0))
            else:
                self.close()
            return True
        self._rbuf += data
        return True

    def _next_raw(self, deadline: Optional[float]) -> Optional[Tuple[int, memoryview]]:
        """The next frame (type, payload), reading as needed; None at the deadline."""
        while True:
            f = self._cut()
            if f is not None:
                return f
            if self._sock is None:
                self._raise_closed()
            if not self._recv():
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if left == 0.0:
                    return None
                if not self._poller.poll(None if left is None else left * 1000 + 1):
                    if deadline is not None and time.monotonic() >= deadline:
                        return None

    def _cut(self) -> Optional[Tuple[int, memoryview]]:
        buf, pos = self._rbuf, self._rpos
        if len(buf) - pos < 8:
            return None
        length, ftype, res = w.PREFIX.unpack_from(buf, pos)
        if ftype != w.EVENT or res or not w.HDR_LEN <= length <= w.PAYLOAD_MAX:
            try:
                w.check_prefix(length, ftype, res)
            except ProtocolError as e:
                self._fail(e)
                raise
        end = pos + 8 + length
        if len(buf) < end:
            return None
        payload = buf[pos + 8:end]
        self._frame_start = self._rx_base + pos
        self._frame_end = self._rx_base + end
        if end == len(buf):
            self._rx_base += end
            del buf[:]
            self._rpos = 0
        elif end > 1 << 16:
            self._rx_base += end
            del buf[:end]
            self._rpos = 0
        else:
            self._rpos = end
        return ftype, memoryview(payload)

    def _pump(self, deadline: Optional[float]) -> bool:
        """Read and handle frames until one was handled or the deadline."""
        try:
            f = self._next_raw(deadline)
            if f is None:
                return False
            self._handle(*f)
        except ProtocolError as e:
            self._fail(e)
            raise
        return True

    def _pump_ready(self) -> None:
        """Handle everything already readable, without waiting."""
        try:
            while self._sock is not None:
                f = self._cut()
                if f is None:
                    if not self._poller.poll(0) or not self._recv():
                        return
                    continue
                self._handle(*f)
        except ProtocolError as e:
            self._fail(e)
            raise

    def _handle(self, ftype: int, p: memoryview) -> None:
        if ftype == w.EVENT:
            self._event(p)
        elif ftype == w.REPLY:
            corr, _rt, result, msg = w.decode_reply(p)
            self._replies[corr] = (result, msg)
        elif ftype == w.ERROR:
            code, msg = w.decode_error(p)
            self._fail(ConnectionClosed(f"vmsigd closed the connection: {msg}", code))
        else:
            self._violation(f"vmsigd sent frame type {ftype} after WELCOME")
        self._check_fds()

    def _check_fds(self) -> None:
        if self._fds and self._fds[0][2] <= self._frame_end:
            self._violation("vmsigd sent an fd with a frame that carries none")

    def _event(self, p: memoryview) -> None:
        h = w.HDR.unpack_from(p)
        w.check_event(len(p), h)
        kind, ep, flags = h[0], h[6], h[5]
        fd = -1
        if flags & w.F_HAS_FD:
            if not self._fds or not self._fds[0][1] <= self._frame_start < self._fds[0][2]:
                self._violation("vmsigd sent a MEMCTX flagged HAS_FD without its fd")
            fd = self._fds.popleft()[0]
        try:
            ev = decode(h, p[w.HDR_LEN:], self._names.get(ep))
        except Exception:
            if fd >= 0:
                os.close(fd)
            raise
        if kind == w.ROSTER:
            self._on_roster(ev)  # type: ignore[arg-type]
        elif kind == w.MEMCTX:
            self._on_memctx(ev, fd)  # type: ignore[arg-type]
        elif fd >= 0:
            os.close(fd)
        if kind == w.STATUS and not ev.peer:
            self._status[ep] = ev  # type: ignore[assignment]
        if kind == w.ACT_ACK and ev.corr and ev.corr == self._stage_corr:
            self._stage_corr = 0  # the daemon is done with the staging memfd (§7.2)
        if ev.corr and ev.corr in self._wanted:
            if kind == w.ACT_ACK:
                self._acks[ev.corr] = ev
            elif kind == w.LEASE_DENY:
                self._denies[ev.corr] = ev
            elif kind == w.STATUS:
                self._answers[ev.corr] = ev
        elif kind == w.LEASE_REVOKE and ev.holder_id == self.control_id:  # type: ignore[attr-defined]
            self._held.pop((ep, ev.lease_class), None)  # type: ignore[attr-defined]
        bit = 1 << kind
        for s in self._streams:
            if s._mask & bit and (s._ep == 0 or s._ep == ep):
                s._q.append(ev)
        if self._waiters:
            self._wake()

    def _on_roster(self, ev: Roster) -> None:
        if ev.change == 2:
            self._roster.pop(ev.endpoint, None)
            self._status.pop(ev.endpoint, None)
            self._names.pop(ev.endpoint, None)
            self._set_memctx(ev.endpoint, None, -1)
        else:
            self._roster[ev.endpoint] = ev
            self._names[ev.endpoint] = ev.name
        ev.vm = ev.name

    def _on_memctx(self, ev: Memctx, fd: int) -> None:
        self._set_memctx(ev.endpoint, ev, fd)

    def _set_memctx(self, ep: int, ev: Optional[Memctx], fd: int) -> None:
        m = self._mem.get(ep)
        if m is None:
            if ev is None:
                return
            m = self._mem[ep] = _MemState()
        if ev is not None and ev.valid and m.valid and ev.epoch == m.epoch:
            if fd >= 0:  # a replay of the context we hold (§8.3)
                os.close(fd)
            return
        if m.fd >= 0:
            os.close(m.fd)
        m.fd = fd
        m.body = ev
        m.valid = bool(ev is not None and ev.valid and fd >= 0)
        if ev is not None:
            m.epoch = ev.epoch

    def _retained(self, ep: int, mask: int) -> List[Event]:
        """Copies of the current ROSTER, STATUS, MEMCTX the bus holds, flagged RETAINED."""
        out: List[Event] = []
        for e in sorted(self._roster) if ep == 0 else [ep]:
            for kind, src in ((w.ROSTER, self._roster), (w.STATUS, self._status),
                              (w.MEMCTX, {k: m.body for k, m in self._mem.items()})):
                ev = src.get(e) if mask & (1 << kind) else None
                if ev is not None:
                    ev = copy.copy(ev)
                    ev.flags |= w.F_RETAINED
                    out.append(ev)
        return out

    def _memctx_poll(self, interval_ns: int) -> None:
        """Handle what the socket holds (an invalidation already sent), and
        let Memory reads skip the check for the next interval_ns."""
        if self._sock is not None and self._poller.poll(0):
            self._pump_ready()
        self._memctx_due = time.monotonic_ns() + interval_ns

    # ---- requests ----

    def _next_corr(self) -> int:
        self._corr += 1
        return self._corr

    def _wait(self, done: Callable[[], bool], what: str, timeout: Optional[float] = None) -> None:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not done():
            if self._sock is None:
                self._raise_closed()
            if not self._pump(deadline) and time.monotonic() >= deadline:
                raise TimeoutError(f"no answer from vmsigd within {self.timeout} s ({what})")

    def _subscribe(self, ep: int, mask: int) -> None:
        corr = self._next_corr()
        self._send(w.subscribe(corr, ep, mask))
        self._wait(lambda: corr in self._replies, "SUBSCRIBE")
        result, msg = self._replies.pop(corr)
        if result < 0:
            raise command_error(result, msg or f"cannot subscribe: {strerror(result)}", "SUBSCRIBE",
                                self._names.get(ep, str(ep) if ep else ""))

    def _unsubscribe(self, ep: int) -> None:
        corr = self._next_corr()
        self._send(w.unsubscribe(corr, ep))
        self._wait(lambda: corr in self._replies, "UNSUBSCRIBE")
        self._replies.pop(corr)

    def _sub_add(self, ep: int, mask: int) -> None:
        sub = self._subs.get(ep)
        if sub is None:
            sub = self._subs[ep] = _Sub()
        if mask & ~sub.mask:
            self._subscribe(ep, mask)
        sub.users.append(mask)

    def _sub_drop(self, ep: int, mask: int) -> None:
        sub = self._subs.get(ep)
        if sub is None or self._sock is None:
            return
        before = sub.mask
        sub.users.remove(mask)
        after = sub.mask
        if after == before:
            return
        # narrowing a subscription: UNSUBSCRIBE, then subscribe to the rest
        self._unsubscribe(ep)
        if after:
            self._subscribe(ep, after)
        else:
            del self._subs[ep]

    def command(self, kind: int, source: int, endpoint: int, body: bytes = b"", flags: int = 0,
                cr3: int = 0, tail: bytes = b"", priority: int = w.PRIO_NORMAL,
                vm: str = "", fd: int = -1) -> Event:
        """Send a raw command and wait for its ACT_ACK (an :class:`Ack`).
        A refusal raises the matching :class:`CommandError`. With the FF
        flag (input kinds only) returns None at once. ``fd`` (version 2,
        CMD_MEMWRITE with the HAS_FD flag and a 24-byte body only) is sent
        with the frame; the daemon may read it until the ACK."""
        if (fd >= 0) != bool(flags & w.F_HAS_FD):
            raise ValueError("fd: pass an fd exactly when flags has HAS_FD")
        if fd >= 0 and (kind != w.CMD_MEMWRITE or tail):
            raise ValueError("fd: only a CMD_MEMWRITE without a tail carries an fd")
        if fd >= 0 and self.version < w.VERSION_FD:
            raise VmsigError(f"fd: vmsigd speaks protocol version {self.version}: a CMD_MEMWRITE source fd "
                             "needs version 2", -errno.EOPNOTSUPP)
        corr = self._next_corr()
        self._last_corr = corr
        frame = w.event(kind, source, endpoint, corr, body, flags, priority, cr3)
        if tail:
            frame += len(tail).to_bytes(4, "little") + tail
        ff = flags & w.F_FF
        if not ff:
            self._wanted.add(corr)
        try:
            if fd >= 0:
                if fd == self._stage_fd:
                    self._stage_corr = corr  # busy from before the send: its ACK may come at once
                self._send_fd(frame, fd)
            else:
                self._send(frame)
            if ff:
                return None  # type: ignore[return-value]
            name = w.KIND_NAMES.get(kind, str(kind))
            self._wait(lambda: corr in self._acks, name)
            ack = self._acks.pop(corr)
            if ack.result < 0:  # type: ignore[attr-defined]
                deny = self._denies.get(corr)
                holder = (deny.holder_name, deny.holder_id, deny.holder_uid,  # type: ignore[attr-defined]
                          deny.holder_pid) if deny else None  # type: ignore[attr-defined]
                raise command_error(ack.result, ack.msg, name, vm, holder)  # type: ignore[attr-defined]
            return ack
        finally:
            self._wanted.discard(corr)
            self._denies.pop(corr, None)

    # ---- public ----

    def vms(self) -> List["VM"]:
        """The VMs the daemon serves now (needs the roster capability)."""
        if not self.caps & w.CAP_ROSTER:
            raise PermissionDenied("listing VMs needs the roster capability, which your uid lacks",
                                   -errno.EPERM)
        if self._sock is None:
            self._raise_closed()
        self._pump_ready()
        return [VM(self, ep, r.name) for ep, r in sorted(self._roster.items())]

    def vm(self, name: Union[str, int], wait: float = 0.0) -> "VM":
        """The VM called ``name`` (or with that endpoint id). With ``wait``,
        waits that many seconds for it to appear. Raises NoSuchVM."""
        if isinstance(name, int):
            return VM(self, name, self._names.get(name, str(name)))
        deadline = time.monotonic() + wait
        while True:
            for v in self.vms():
                if v.name == name:
                    return v
            left = deadline - time.monotonic()
            if left <= 0:
                raise NoSuchVM(f"no VM named '{name}'", -errno.ENOENT, "", name)
            self._pump(time.monotonic() + left)

    def events(self, vm: VMSpec = None, kinds: KindSpec = None,
               timeout: Optional[float] = None) -> "EventStream":
        """Subscribe and return a stream of typed events, for ``for`` and for
        ``async for``. ``vm``: a VM, its name or endpoint id (None = every
        VM, including later ones). ``kinds``: names (``"STATUS"``), event
        classes (``vmsig.Status``) or numbers; None = every kind your
        capabilities allow. ``timeout``: iteration ends after that many
        seconds without an event (None = never). The current state of
        retained kinds comes first, flagged ``retained``."""
        if vm is None:
            ep = 0
        elif isinstance(vm, VM):
            ep = vm.endpoint
        elif isinstance(vm, int):
            ep = vm
        else:
            ep = self.vm(vm).endpoint
        mask = kinds_mask(kinds)
        if kinds is None:
            mask = sum(1 << k for k, cap in _KIND_CAPS.items() if cap == -1 or self.caps & cap)
        return EventStream(self, ep, mask, timeout)

    def poll(self) -> None:
        """Handle what the socket has now, without waiting (keeps roster and
        memory-context state current between other calls)."""
        self._pump_ready()

    def fileno(self) -> int:
        """The socket's fd, e.g. for your own select loop (then call poll())."""
        if self._sock is None:
            self._raise_closed()
        return self._fileno

    # ---- asyncio ----

    def _wake(self) -> None:
        for f in list(self._waiters):
            if not f.done():
                f.set_result(None)
        self._waiters.clear()
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fileno)
            self._loop = None

    def _on_readable(self) -> None:
        try:
            self._pump_ready()
        except VmsigError:
            pass  # the stream sees _closed
        self._wake()

    async def _readable(self, timeout: Optional[float]) -> None:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._waiters.add(fut)
        if self._loop is None and self._sock is not None:
            loop.add_reader(self._fileno, self._on_readable)
            self._loop = loop
        try:
            await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self._waiters.discard(fut)
            if not self._waiters and self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(self._fileno)
                self._loop = None


class EventStream:
    """Typed events of one subscription. Iterate it (``for``/``async for``);
    close it (or leave its ``with`` block) to unsubscribe."""

    def __init__(self, bus: Bus, ep: int, mask: int, timeout: Optional[float]) -> None:
        self._bus = bus
        self._ep = ep
        self._mask = mask
        self._timeout = timeout
        self._q: Deque[Event] = collections.deque()
        self._open = False
        # Kinds the connection already has get no replay from the daemon
        # (§8.3): give this stream the bus's copy of their current state.
        had = bus._subs[ep].mask if ep in bus._subs else 0
        bus._pump_ready()
        self._q.extend(bus._retained(ep, mask & had))
        bus._streams.append(self)
        try:
            bus._sub_add(ep, mask)
        except BaseException:
            bus._streams.remove(self)
            raise
        self._open = True

    def close(self) -> None:
        """Unsubscribe (only the kinds no other stream of the bus needs)."""
        if self._open:
            self._open = False
            self._bus._streams.remove(self)
            with contextlib.suppress(ConnectionClosed):
                self._bus._sub_drop(self._ep, self._mask)

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Event]:
        return self

    def get(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next event, or None after ``timeout`` seconds (None = wait)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._q:
            if self._bus._sock is None:
                self._bus._raise_closed()
            if not self._bus._pump(deadline) and deadline is not None and time.monotonic() >= deadline:
                return None
        return self._q.popleft()

    def __next__(self) -> Event:
        ev = self.get(self._timeout)
        if ev is None:
            raise StopIteration
        return ev

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        while True:
            if self._q:
                return self._q.popleft()
            self._bus._pump_ready()
            if self._q:
                continue
            if self._bus._sock is None:
                self._bus._raise_closed()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise StopAsyncIteration
            await self._bus._readable(left)

    def pending(self) -> int:
        """Events received and not yet taken."""
        return len(self._q)


class VM:
    """One VM (endpoint) of the bus. Get it with ``bus.vm("name")``.

    Input and power commands need a lease: inside ``with vm.lease("input")``
    they use yours; outside, each call takes the lease and gives it back
    (vmsigctl's behaviour). Every refusal raises a typed exception with the
    daemon's reason.
    """

    def __init__(self, bus: Bus, endpoint: int, name: str) -> None:
        self._bus = bus
        self.endpoint = endpoint
        self.name = name

    def __repr__(self) -> str:
        return f"<vmsig.VM {self.name!r} endpoint={self.endpoint}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VM) and other._bus is self._bus and other.endpoint == self.endpoint

    def __hash__(self) -> int:
        return hash((id(self._bus), self.endpoint))

    # ---- state ----

    @property
    def roster(self) -> Optional[Roster]:
        """The latest ROSTER of this VM (None if unknown or gone)."""
        self._bus._pump_ready()
        return self._bus._roster.get(self.endpoint)

    @property
    def run_state(self) -> RunState:
        """The run state from the latest ROSTER (no round trip)."""
        r = self.roster
        return RunState.of(r.run_state) if r else RunState.UNKNOWN

    @property
    def seams(self) -> int:
        """Attached adapters (``vmsig.Seam`` bits) from the latest ROSTER."""
        r = self.roster
        return r.seams if r else 0

    def status(self) -> Tuple[RunState, str]:
        """Ask the VM's run state (CMD_STATUS_QUERY): (state, reason)."""
        b = self._bus
        try:
            ack = b.command(w.CMD_STATUS_QUERY, w.SRC_VMHOST, self.endpoint, vm=self.name)
        finally:
            st = b._answers.pop(b._last_corr, None)  # the STATUS came first, with the query's corr
        return RunState.of(ack.value), (st.reason if isinstance(st, Status) else "")  # type: ignore

    def wait_ready(self, seams: int = 0, running: bool = True, memory: bool = False,
                   timeout: float = 60.0) -> "VM":
        """Wait until the VM has the given adapters attached (``vmsig.Seam``
        bits), is running (if ``running``) and has a valid memory context
        (if ``memory``); docs/protocol.md §8.6. TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        b = self._bus
        if memory:
            self._want_memctx()
        while True:
            r = self.roster
            m = b._mem.get(self.endpoint)
            if r is not None and r.seams & seams == seams \
                    and (not running or r.run_state == RunState.RUNNING) \
                    and (not memory or (m is not None and m.valid)):
                return self
            if b._sock is None:
                b._raise_closed()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"VM '{self.name}' not ready within {timeout} s")
            b._pump(time.monotonic() + left)

    # ---- leases ----

    @contextlib.contextmanager
    def lease(self, cls: str) -> Iterator["VM"]:
        """Hold the ``"input"``, ``"power"`` or ``"memwrite"`` lease for the
        ``with`` block; released on exit, also when the block raises.
        LeaseHeldError (with ``holder``) if another control holds it."""
        c = self._class(cls)
        self._acquire(c)
        try:
            yield self
        finally:
            self._release(c)

    def _class(self, cls: str) -> int:
        try:
            return LEASE_CLASSES.index(cls)
        except ValueError:
            raise ValueError(f"lease class must be one of {', '.join(LEASE_CLASSES)}, not {cls!r}") from None

    def _acquire(self, c: int) -> None:
        key = (self.endpoint, c)
        b = self._bus
        if b._held.get(key):
            b._held[key] += 1
            return
        b.command(w.LEASE_ACQUIRE, w.SRC_CORE, self.endpoint, w.lease_body(c), priority=w.PRIO_URGENT,
                  vm=self.name)
        b._held[key] = 1

    def _release(self, c: int) -> None:
        key = (self.endpoint, c)
        b = self._bus
        depth = b._held.get(key, 0)
        if depth > 1:
            b._held[key] = depth - 1
            return
        b._held.pop(key, None)
        if b._sock is None or depth == 0:
            return  # closed: the daemon ended it; revoked: nothing to give back
        with contextlib.suppress(NoSuchVM, PermissionDenied):
            b.command(w.LEASE_RELEASE, w.SRC_CORE, self.endpoint, w.lease_body(c), priority=w.PRIO_URGENT,
                      vm=self.name)

    @contextlib.contextmanager
    def _leased(self, c: int) -> Iterator[None]:
        if self._bus._held.get((self.endpoint, c)):
            yield
            return
        self._acquire(c)
        try:
            yield
        finally:
            self._release(c)

    # ---- input ----

    def _input(self, kind: int, x: int = 0, y: int = 0, code: int = 0, value: int = 0) -> None:
        self._bus.command(kind, w.SRC_INPUT, self.endpoint, w.input_body(x, y, code, value), vm=self.name)

    def type(self, text: str) -> None:
        """Type ``text`` on a US layout: per character a key press and
        release, with left shift around shifted characters (vmsigctl
        ``input VM type``). ValueError for a character with no key."""
        strokes = []
        for ch in text:
            k = keys.by_char(ch)
            if k is None:
                raise ValueError(f"cannot type character {ch!r} on a US layout")
            strokes.append(k)
        with self._leased(0):
            for code, shift in strokes:
                if shift:
                    self._input(w.KEY, code=keys.LEFTSHIFT, value=1)
                self._input(w.KEY, code=code, value=1)
                self._input(w.KEY, code=code, value=0)
                if shift:
                    self._input(w.KEY, code=keys.LEFTSHIFT, value=0)

    def key(self, combo: str) -> None:
        """Press a key or combination (``"enter"``, ``"ctrl+alt+del"``): keys
        pressed in order, released in reverse (vmsigctl ``input VM key``)."""
        codes = keys.parse_combo(combo)
        with self._leased(0):
            for c in codes:
                self._input(w.KEY, code=c, value=1)
            for c in reversed(codes):
                self._input(w.KEY, code=c, value=0)

    def move(self, x: int, y: int, relative: bool = False) -> None:
        """Move the pointer: absolute ``x``, ``y`` in 0..32767 (scaled to the
        screen), or deltas with ``relative=True``."""
        with self._leased(0):
            self._input(w.MOVE_REL if relative else w.MOVE_ABS, x, y)

    def click(self, button: str = "left") -> None:
        """Press and release ``"left"``, ``"right"`` or ``"middle"``."""
        code = {"left": 1, "right": 2, "middle": 3}.get(button)
        if code is None:
            raise ValueError("click takes left, right or middle")
        with self._leased(0):
            self._input(w.BUTTON, code=code, value=1)
            self._input(w.BUTTON, code=code, value=0)

    def scroll(self, n: int, horizontal: int = 0) -> None:
        """Turn the wheel ``n`` clicks vertically (and ``horizontal`` clicks
        sideways), as vmsigctl ``input VM wheel N``."""
        with self._leased(0):
            self._input(w.WHEEL, horizontal, n)

    # ---- power ----

    def power(self, op: str) -> RunState:
        """CMD_POWER ``on``, ``off``, ``reset``, ``pause``, ``resume`` or
        ``powerdown``; returns the run state the adapter reported."""
        code = _POWER_OPS.get(op)
        if code is None:
            raise ValueError(f"power operation must be one of {', '.join(_POWER_OPS)}, not {op!r}")
        with self._leased(1):
            ack = self._bus.command(w.CMD_POWER, w.SRC_VMHOST, self.endpoint, w.power_body(code),
                                    priority=w.PRIO_HIGH, vm=self.name)
        return RunState.of(ack.value)  # type: ignore[attr-defined]

    def pause(self) -> RunState:
        """Pause the guest's vCPUs."""
        return self.power("pause")

    def resume(self) -> RunState:
        """Resume a paused guest."""
        return self.power("resume")

    def reset(self) -> RunState:
        """Hard reset. Memory contexts of the old boot become stale."""
        return self.power("reset")

    @contextlib.contextmanager
    def paused(self) -> Iterator["VM"]:
        """Pause for the ``with`` block, resume after (also on errors). A VM
        that was already paused stays paused. Holds the power lease."""
        with self.lease("power"):
            was_paused = False
            try:
                self.pause()
            except VmsigError as e:
                if e.code != -errno.EALREADY:
                    raise
                was_paused = True
            try:
                yield self
            finally:
                if not was_paused and not self._bus.closed:
                    self.resume()

    # ---- memory ----

    def memory(self, timeout: float = 30.0, mapped: bool = False, check_interval: float = 0.0001) -> Memory:
        """The guest memory at the current epoch of the VM's memory context,
        waiting up to ``timeout`` seconds for a valid one (the guest kernel
        may still be booting). ``mapped=True`` reads through a shared mapping
        (faster; only where the RAM file cannot shrink under you).
        ``check_interval``: reads look at the socket for the end of the
        epoch at most this often (seconds; 0 = on every call)."""
        m = self._memctx(time.monotonic() + timeout, "reading guest memory")
        ev = m.body
        assert ev is not None
        return Memory(self, m.fd, ev.epoch, ev.kernel_root, ev.paging, ev.os_kind, ev.ranges, mapped,
                      check_interval, ev.kernel_base)

    def _memctx(self, deadline: float, what: str) -> "_MemState":
        """The VM's current valid memory context, waiting until deadline."""
        b = self._bus
        if not b.caps & w.CAP_MEMCTX:
            raise PermissionDenied(f"{what} needs the memctx capability, which your uid lacks",
                                   -errno.EPERM, "MEMCTX", self.name)
        self._want_memctx()
        while True:
            b._pump_ready()
            m = b._mem.get(self.endpoint)
            if m is not None and m.valid and m.body is not None:
                return m
            if self.endpoint not in b._roster and b.caps & w.CAP_ROSTER:
                raise NoSuchVM(f"VM '{self.name}' is gone", -errno.ENOENT, "MEMCTX", self.name)
            left = deadline - time.monotonic()
            if left <= 0:
                raise NotReady(f"'{self.name}' has no valid memory context yet (guest still booting?)",
                               -errno.EAGAIN, "MEMCTX", self.name)
            b._pump(time.monotonic() + left)

    def _want_memctx(self) -> None:
        b = self._bus
        if not any(s.mask & (1 << w.MEMCTX) for e, s in b._subs.items() if e in (0, self.endpoint)):
            b._sub_add(self.endpoint, 1 << w.MEMCTX)  # kept: it is how staleness is learnt

    def _memwrite(self, addr: int, data: bytes, cr3: int, phys: bool) -> Event:
        """CMD_MEMWRITE of data: inline up to 440 bytes; from 64 KiB up on a
        version-2 connection through the staging memfd; else as a tail.
        Returns the ACT_ACK."""
        n = len(data)
        if not n:
            raise ValueError("data: nothing to write")
        b = self._bus
        if n > b.tail_max:
            raise ValueError(f"data: {n} bytes is over the daemon's bound of {b.tail_max} per write")
        _check_u64("address", addr)
        _check_u64("cr3", cr3)
        with self._leased(2):
            if n <= w.INLINE_MAX:
                body = w.memwrite_head(addr, n, phys) + data
                return b.command(w.CMD_MEMWRITE, w.SRC_MEMCTX, self.endpoint, body, cr3=cr3, vm=self.name)
            stage = b._stage() if n >= w.MEMWRITE_FD_MIN and b.version >= w.VERSION_FD else None
            if stage is not None:
                stage[:n] = data  # free: the ACK of the last write using it arrived
                return b.command(w.CMD_MEMWRITE, w.SRC_MEMCTX, self.endpoint,
                                 w.memwrite_fd_body(addr, n, phys, 0), w.F_HAS_FD, cr3=cr3, vm=self.name,
                                 fd=b._stage_fd)
            return b.command(w.CMD_MEMWRITE, w.SRC_MEMCTX, self.endpoint, w.memwrite_head(addr, n, phys),
                             w.F_SRC_PAYLOAD, cr3=cr3, tail=data, vm=self.name)

    def _memwrite_fd(self, addr: int, fd: Union[int, HasFileno], length: int, offset: int, cr3: int,
                     phys: bool) -> Event:
        """CMD_MEMWRITE of bytes [offset, offset + length) of the caller's
        fd (version 2). The fd is checked here as the daemon would (§6): a
        source it refuses would end the whole connection. Returns the ACK."""
        b = self._bus
        if b.closed:
            b._raise_closed()
        if b.version < w.VERSION_FD:
            raise VmsigError(f"writing from an fd needs protocol version 2; this connection speaks version "
                             f"{b.version} (an older vmsigd, or version_max=1)", -errno.EOPNOTSUPP)
        fd = _source_fd(fd)
        if isinstance(length, bool) or not isinstance(length, int):
            raise TypeError(f"length must be an int, got {type(length).__name__}")
        if not 1 <= length <= b.tail_max:
            raise ValueError(f"length must be 1..{b.tail_max} (the daemon's bound per write), got {length}")
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise TypeError(f"offset must be an int, got {type(offset).__name__}")
        if not 0 <= offset <= w.U64_MAX - length:
            raise ValueError(f"offset must be 0..2**64-1-length, got {offset}")
        _check_u64("address", addr)
        _check_u64("cr3", cr3)
        with self._leased(2):
            body = w.memwrite_fd_body(addr, length, phys, offset)
            return b.command(w.CMD_MEMWRITE, w.SRC_MEMCTX, self.endpoint, body, w.F_HAS_FD, cr3=cr3,
                             vm=self.name, fd=fd)

    # ---- frames ----

    def _frame_source(self, deadline: float) -> FrameSource:
        """The VM's frame reader, following the memory context's epoch."""
        m = self._memctx(deadline, "reading frames")
        src = self._bus._frames.get(self.endpoint)
        if src is None:
            src = self._bus._frames[self.endpoint] = FrameSource()
        src.sync(m, self.name)
        return src

    def frame(self, timeout: float = 5.0) -> Frame:
        """The newest complete frame of the VM's screen, from the in-guest
        vgpu-stream producer (docs/vgpu-stream.md), read out of guest RAM
        through the memory context with libvgpu-perception.

        Waits up to ``timeout`` seconds for a valid memory context, a
        producer and a first frame. Raises NoProducerError when there is no
        producer in guest RAM by then, FrameError for other failures (none
        published yet, every attempt torn, the RAM unreadable), NotReady
        without a memory context, PermissionDenied without the memctx
        capability, ImportError when libvgpu-perception cannot be loaded.

        The producer is found by a full scan of guest RAM the first time;
        later calls reuse it until the guest resets or the producer goes."""
        deadline = time.monotonic() + timeout
        while True:
            src = self._frame_source(deadline)
            r = src.read()
            if r == 0:
                return src.frame()
            left = deadline - time.monotonic()
            if r not in _FRAME_RETRY or left <= 0:
                raise frame_error(r, self.name)
            src.wait(0, min(left, 0.1))

    def frames(self, timeout: Optional[float] = None) -> Iterator[Frame]:
        """Every new frame as it is published, for ``for``: first the newest
        one, then each frame newer than the last one yielded (frames the
        producer published in between are skipped; a producer restart
        starts again at its first frame). Iteration ends after ``timeout``
        seconds without a new frame (None = never), or raises
        NoProducerError if there was no producer at all by then. Waits
        without spinning (the producer's cadence); raises as :meth:`frame`
        does for faults other than "nothing new yet"."""
        last_seq, last_nonce, last_epoch = 0, None, -1
        while True:
            end = None if timeout is None else time.monotonic() + timeout
            r = 0
            while True:
                left = 1.0 if end is None else end - time.monotonic()
                if left <= 0:
                    if r == -errno.ENOENT:
                        raise frame_error(r, self.name)
                    return
                # without a timeout, wait as long as it takes for a memory context too
                src = self._frame_source(end if end is not None else time.monotonic() + 1e9)
                # a new epoch is a new reader: anything it finds is new
                after = last_seq if last_nonce is not None and src.epoch == last_epoch else 0
                r = src.wait(after, min(left, 0.5))
                if r == 0:
                    r = src.read()
                    if r == 0 and (src.info.seq > last_seq or src.info.nonce != last_nonce):
                        break
                if r and r not in _FRAME_RETRY:
                    raise frame_error(r, self.name)
            f = src.frame()
            last_seq, last_nonce, last_epoch = f.seq, f.nonce, src.epoch
            yield f

    def producer(self, timeout: float = 5.0) -> dict:
        """What the in-guest producer's header says (``nonce``, ``pid``,
        ``width``, ``height``, ``frame_interval_us``, ``latest_seq``,
        ``frames_published``, ``frames_dropped``, ``paused``, ...) plus the
        reader's counters under ``stats`` (``scans``, ``frames``, ``torn``
        ...). Raises NoProducerError when none is found within timeout."""
        deadline = time.monotonic() + timeout
        while True:
            src = self._frame_source(deadline)
            pi = src.producer()
            if pi is not None:
                out = {name: getattr(pi, name) for name, _ in pi._fields_}
                out["paused"] = bool(pi.flags & 1)  # VGPU_HF_PAUSED
                out["stats"] = src.stats()
                return out
            left = deadline - time.monotonic()
            if left <= 0:
                raise frame_error(-errno.ENOENT, self.name)
            src.wait(0, min(left, 0.1))

    def frame_request(self, op: str, timeout: float = 5.0) -> None:
        """Ask the producer to change what it publishes and wait for its
        acknowledgement: ``"pause"``, ``"resume"``, ``"full"`` (a complete
        frame now), ``"fps=N"`` (cap, 0 = none) or ``"region=X,Y,W,H"``
        (crop; ``"region=0,0,0,0"`` = whole screen). The request is written
        into the producer's control block with CMD_MEMWRITE (guest-physical)
        under the memwrite lease (yours inside ``with vm.lease("memwrite")``,
        else taken for the call). Raises FrameError with the producer's
        errno if it refused, or -ETIMEDOUT if it did not answer in time;
        NoProducerError when there is none."""
        code, args = _parse_request(op)
        deadline = time.monotonic() + timeout
        while True:
            src = self._frame_source(deadline)
            r, block, gpa, seq = src.control(code, args)
            left = deadline - time.monotonic()
            if r == 0 or r != -errno.ENOENT or left <= 0:
                break
            src.wait(0, min(left, 0.2))
        if r < 0:
            raise frame_error(r, self.name)
        self._memwrite(gpa, block, 0, True)
        while True:
            r, result = src.control_ack(seq)
            if r < 0:
                raise FrameError(f"'{self.name}': the producer went away before acknowledging request {seq} "
                                 f"({op})", r)
            if r == 1:
                if result < 0:
                    raise FrameError(f"'{self.name}': the producer refused request {seq} ({op}): "
                                     f"{strerror(result)}", result)
                return
            if time.monotonic() >= deadline:
                raise FrameError(f"'{self.name}': request {seq} ({op}) written at 0x{gpa:x}, not acknowledged "
                                 f"in {timeout:g} s", -errno.ETIMEDOUT)
            # the producer looks at its control block once per frame
            self._bus._pump(time.monotonic() + 0.002)


def _check_u64(what: str, v: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{what} must be an int, got {type(v).__name__}")
    if not 0 <= v <= w.U64_MAX:
        raise ValueError(f"{what} must be 0..2**64-1, got {v:#x}")


def _fstatfs_type(fd: int) -> Optional[int]:
    """f_type of fstatfs(fd), None when libc cannot tell."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        buf = ctypes.create_string_buffer(256)  # >= sizeof(struct statfs) on every Linux ABI
        if libc.fstatfs(fd, buf) != 0:
            return None
        return ctypes.c_long.from_buffer(buf).value  # f_type is the first field, a word
    except (OSError, AttributeError):
        return None


def _source_fd(fd: Union[int, HasFileno]) -> int:
    """The fd number of a memwrite source, checked as the daemon checks it
    (docs/protocol.md §6): a readable regular file on tmpfs."""
    if not isinstance(fd, int) and hasattr(fd, "fileno"):
        fd = fd.fileno()
    if isinstance(fd, bool) or not isinstance(fd, int):
        raise TypeError(f"fd must be a file descriptor (an int or an object with fileno()), "
                        f"got {type(fd).__name__}")
    if fd < 0:
        raise ValueError(f"fd must be an open file descriptor (>= 0), got {fd}")
    try:
        st = os.fstat(fd)
        fl = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError as e:
        raise OSError(e.errno, f"fd {fd} cannot be the write's source: {e.strerror}") from None
    if fl & getattr(os, "O_PATH", 0o10000000):
        raise ValueError(f"fd {fd} is an O_PATH fd: the write's source must be open for reading")
    if stat.S_ISFIFO(st.st_mode):
        raise ValueError(f"fd {fd} is a pipe or FIFO: the write's source must be a memfd or a /dev/shm file")
    if stat.S_ISSOCK(st.st_mode):
        raise ValueError(f"fd {fd} is a socket: the write's source must be a memfd or a /dev/shm file")
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"fd {fd} is not a regular file: the write's source must be a memfd or a /dev/shm file")
    if fl & os.O_ACCMODE == os.O_WRONLY:
        raise ValueError(f"fd {fd} is not open for reading")
    ftype = _fstatfs_type(fd)
    if ftype is not None and ftype != _TMPFS_MAGIC:
        raise ValueError(f"fd {fd} is not a memfd or tmpfs file (filesystem magic {ftype:#x}): vmsigd reads "
                         "only those")
    return fd


_FRAME_RETRY = (-errno.ENOENT, -errno.ENODATA, -errno.EAGAIN, -errno.ESTALE, -errno.ETIMEDOUT)


def _parse_request(op: str) -> Tuple[int, Tuple[int, int, int, int]]:
    """A frame_request op as (enum vgpu_op, its 4 arguments)."""
    s = op.strip().lower()
    try:
        if s in ("pause", "resume"):
            return _vgpu.OP_PAUSE, (int(s == "pause"), 0, 0, 0)
        if s == "full":
            return _vgpu.OP_FULL_FRAME, (0, 0, 0, 0)
        if s.startswith("fps="):
            n = int(s[4:], 10)
            if 0 <= n < 1 << 32:
                return _vgpu.OP_FPS_CAP, (n, 0, 0, 0)
        if s.startswith("region="):
            v = [int(x, 10) for x in s[7:].split(",")]
            if len(v) == 4 and all(0 <= x < 1 << 32 for x in v):
                return _vgpu.OP_REGION, (v[0], v[1], v[2], v[3])
    except ValueError:
        pass
    raise ValueError(f"frame request {op!r} is not pause, resume, full, fps=N or region=X,Y,W,H")


def connect(path: Optional[str] = None, name: str = "vmsig-python", timeout: float = DEFAULT_TIMEOUT,
            version_max: int = w.VERSION_MAX) -> Bus:
    """Connect to vmsigd: ``with vmsig.connect() as bus:``.

    ``path``: the socket; default ``$VMSIG_SOCKET``, else
    ``/run/vmsig/vmsigd.sock`` (as vmsigctl). ``name``: shown in audit
    records and as the holder of your leases. ``timeout``: seconds to wait
    for any one answer. ``version_max``: the highest protocol version to
    offer (2; 1 gives exactly version 1, without memfd writes); the one
    negotiated is ``bus.version``. Raises ConnectionRefused with the
    daemon's reason.
    """
    return Bus(path, name, timeout, version_max)
