# SPDX-License-Identifier: MIT
"""Exceptions of the vmsig package.

Every refusal by the daemon raises a subclass of :class:`VmsigError` that
carries the daemon's own reason (``reason``) and its negative errno
(``code``), so a caller can both show the text and branch on the type::

    try:
        vm.key("ctrl+alt+del")
    except vmsig.LeaseHeldError as e:
        print("input is held by", e.holder)
"""

from __future__ import annotations

import errno
import os
from typing import Optional


class VmsigError(Exception):
    """Base class: something vmsig or the daemon refused.

    ``code`` is the negative errno (0 if none applies), ``reason`` the
    daemon's text (or ours, when the refusal is local).
    """

    def __init__(self, reason: str, code: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code

    def __str__(self) -> str:
        # the daemon's text is untrusted: no control characters to a terminal
        return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in self.reason)


class ConnectionRefused(VmsigError):
    """vmsigd refused the connection (ERROR before WELCOME), e.g. ``-EACCES``
    ``uid 1234 is not admitted`` or ``-EUSERS`` (too many connections)."""


class ConnectionClosed(VmsigError):
    """The connection ended: the daemon sent ERROR (``code``, ``reason``:
    ``-ENOBUFS`` too slow, ``-ESHUTDOWN`` shutting down, ``-EPROTO`` we broke
    the protocol) or went away without one (``code`` 0)."""


class ProtocolError(VmsigError):
    """The daemon's stream broke a rule of docs/protocol.md; the connection is
    closed. ``code`` is ``-EPROTO``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, -errno.EPROTO)


class CommandError(VmsigError):
    """A command was refused or failed (its ACT_ACK or REPLY result).

    ``kind`` names the command (e.g. ``"KEY"``), ``vm`` the VM name.
    """

    def __init__(self, reason: str, code: int, kind: str = "", vm: str = "") -> None:
        super().__init__(reason, code)
        self.kind = kind
        self.vm = vm


class PermissionDenied(CommandError):
    """``-EPERM``/``-EACCES``: a capability is missing, a lease is missing or
    not yours, or a guest page is read-only."""


class LeaseHeldError(CommandError):
    """``-EBUSY`` on a lease: another control holds it. ``holder`` is its
    HELLO name, ``holder_id``, ``holder_uid``, ``holder_pid`` the rest of the
    daemon's LEASE_DENY."""

    def __init__(self, reason: str, code: int, kind: str = "", vm: str = "", holder: str = "",
                 holder_id: int = 0, holder_uid: int = 0, holder_pid: int = 0) -> None:
        super().__init__(reason, code, kind, vm)
        self.holder = holder
        self.holder_id = holder_id
        self.holder_uid = holder_uid
        self.holder_pid = holder_pid


class NoSuchVM(CommandError):
    """The VM (endpoint) does not exist, or left: ``-ENOENT``."""


class NotReady(CommandError):
    """The VM exists but cannot do this now: no adapter on that seam
    (``-ENODEV``), no valid memory context yet (``-EAGAIN``), not running."""


class StaleContextError(VmsigError):
    """A memory context was used after the guest reset (or the VM left): its
    epoch ended. Get a new one with ``vm.memory()``."""

    def __init__(self, reason: str, epoch: int = 0) -> None:
        super().__init__(reason, -errno.ESTALE)
        self.epoch = epoch


class GuestMemoryError(VmsigError):
    """A guest memory access failed: ``-EFAULT`` not mapped / a RAM hole,
    ``-ERANGE`` non-canonical address, ``-ENXIO`` page tables outside RAM.
    ``address`` is the first address that could not be read."""

    def __init__(self, reason: str, code: int, address: int = 0) -> None:
        super().__init__(reason, code)
        self.address = address


class FrameError(VmsigError):
    """A frame could not be read: ``-ENODATA`` the producer has published
    none yet, ``-EAGAIN`` every attempt was torn, ``-ETIMEDOUT`` nothing
    new in time, ``-EIO`` the guest RAM could not be read; for a control
    request, the producer's negative errno."""


class NoProducerError(FrameError):
    """No vgpu-stream producer in the guest's RAM (``-ENOENT``): it is not
    running, or not yet, or it stopped."""


class SymbolError(VmsigError):
    """A kernel symbol could not be resolved. ``name`` is the symbol (or
    spec) asked for, ``path`` the symbol file (or its label).

    Subclasses say why: :class:`SymbolFileError` (the file is malformed or
    unreadable), :class:`UnknownSymbol`, :class:`AmbiguousSymbol`,
    :class:`KernelBaseUnknown`. A bad ``NAME+OFFSET`` spec or no symbols
    loaded raise SymbolError itself (``-EINVAL``)."""

    def __init__(self, reason: str, code: int = -errno.EINVAL, name: str = "", path: str = "") -> None:
        super().__init__(reason, code)
        self.name = name
        self.path = path


class SymbolFileError(SymbolError):
    """A symbol file (System.map, /proc/kallsyms text) was refused whole:
    ``path`` and ``line`` (1-based; 0 when the fault is not one line's) name
    where, ``reason`` reads ``PATH:LINE: why``. ``code`` is ``-EINVAL``,
    ``-EFBIG`` (over 64 MiB) or the errno of a failed open/read."""

    def __init__(self, reason: str, code: int = -errno.EINVAL, path: str = "", line: int = 0) -> None:
        super().__init__(reason, code, "", path)
        self.line = line


class UnknownSymbol(SymbolError):
    """The symbol file has no such kernel-image symbol (``-ENOENT``)."""

    def __init__(self, reason: str, name: str = "", path: str = "") -> None:
        super().__init__(reason, -errno.ENOENT, name, path)


class AmbiguousSymbol(SymbolError):
    """The name is defined at more than one address (``-EINVAL``); ``lines``
    are the lines of its definitions (aliases at one address are fine)."""

    def __init__(self, reason: str, name: str = "", path: str = "", lines: tuple = ()) -> None:
        super().__init__(reason, -errno.EINVAL, name, path)
        self.lines = lines


class KernelBaseUnknown(SymbolError):
    """The memory context carries no kernel base (an older vmsigd, or the
    kernel image was not found), so the KASLR slide cannot be applied
    (``-ENODATA``)."""

    def __init__(self, reason: str, name: str = "", path: str = "") -> None:
        super().__init__(reason, -errno.ENODATA, name, path)


def strerror(code: int) -> str:
    return os.strerror(-code) if code < 0 else "success"


def command_error(code: int, msg: str, kind: str, vm: str, holder: Optional[tuple] = None) -> CommandError:
    """The typed exception for a refused command's result and message."""
    text = msg or strerror(code)
    if code == -errno.EBUSY and kind == "LEASE_ACQUIRE":
        name, hid, huid, hpid = holder if holder else ("", 0, 0, 0)
        return LeaseHeldError(text, code, kind, vm, name, hid, huid, hpid)
    if code in (-errno.EPERM, -errno.EACCES):
        return PermissionDenied(text, code, kind, vm)
    if code == -errno.ENOENT:
        return NoSuchVM(text, code, kind, vm)
    if code in (-errno.ENODEV, -errno.EAGAIN, -errno.ENOTCONN, -errno.EHOSTDOWN):
        return NotReady(text, code, kind, vm)
    return CommandError(text, code, kind, vm)
