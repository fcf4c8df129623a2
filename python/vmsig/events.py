# SPDX-License-Identifier: MIT
"""Typed events: what ``bus.events()`` yields.

Every event is a dataclass deriving from :class:`Event`; match on the class
(``isinstance(ev, vmsig.Status)``) or on ``ev.kind_name``. ``ev.vm`` is the
VM's name when the bus knows it. ``retained`` marks a replay of current state
(docs/protocol.md §8.3): apply it as "this is how things are now".
``to_dict()`` gives a JSON-ready dict.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from . import _wire as w


class Kind(enum.IntEnum):
    """Event kinds a control receives (UP kinds)."""

    ROSTER = w.ROSTER
    MEMCTX = w.MEMCTX
    STATUS = w.STATUS
    ACT_ACK = w.ACT_ACK
    DIAG = w.DIAG
    LEASE_GRANT = w.LEASE_GRANT
    LEASE_DENY = w.LEASE_DENY
    LEASE_REVOKE = w.LEASE_REVOKE


class RunState(enum.IntEnum):
    """A VM's run state (§8.6). Values a later daemon adds show as UNKNOWN."""

    UNKNOWN = 0
    RUNNING = 1
    PAUSED = 2
    SHUTDOWN = 3
    GONE = 4
    PANICKED = 5
    BOOTING = 6

    @classmethod
    def of(cls, value: int) -> "RunState":
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN


class Change(enum.IntEnum):
    """What a ROSTER event reports."""

    APPEARED = 1
    LEFT = 2
    CHANGED = 3


class Seam(enum.IntFlag):
    """Adapter bits of ``Roster.seams``."""

    MEMCTX = 0x02
    INPUT = 0x04
    VMHOST = 0x08


LEASE_CLASSES = ("input", "power", "memwrite")
REVOKE_REASONS = {1: "released", 2: "holder disconnected", 3: "endpoint gone", 4: "daemon shutdown"}


@dataclass(slots=True)
class Event:
    """Fields every event has (the header of §3.7)."""

    kind: int
    endpoint: int
    vm: Optional[str]
    source: int
    priority: int
    flags: int
    peer: int
    corr: int
    seq: int
    ts_ns: int

    @property
    def kind_name(self) -> str:
        return w.KIND_NAMES.get(self.kind, str(self.kind))

    @property
    def retained(self) -> bool:
        """A replay of retained state, not a change that just happened."""
        return bool(self.flags & w.F_RETAINED)

    @property
    def droppable(self) -> bool:
        return bool(self.flags & w.F_DROPPABLE)

    def to_dict(self) -> Dict[str, Any]:
        """A dict of every field plus ``kind_name`` (JSON-ready)."""
        d = dataclasses.asdict(self)
        d["kind_name"] = self.kind_name
        if self.retained:
            d["retained"] = True
        return d


@dataclass(slots=True)
class Roster(Event):
    """A VM appeared, left, or changed (adapters or run state)."""

    change: int
    seams: int
    run_state: int
    name: str


@dataclass(slots=True)
class Memctx(Event):
    """A memory context was published (``valid``) or invalidated.
    ``kernel_base``: where the guest kernel's image starts (KASLR slide
    included), None when the daemon does not know it."""

    epoch: int
    kernel_root: int
    valid: bool
    paging: int
    os_kind: int
    ranges: Tuple[Tuple[int, int, int], ...]
    has_fd: bool
    kernel_base: Optional[int] = None


@dataclass(slots=True)
class Status(Event):
    """The VM's run state and why it changed."""

    run_state: int
    reason: str


@dataclass(slots=True)
class Ack(Event):
    """ACT_ACK: the answer to one of your commands."""

    result: int
    cmd_kind: int
    value: int
    msg: str


@dataclass(slots=True)
class Diag(Event):
    """A diagnostic from an adapter (e.g. the guest kernel is not found yet)."""

    code: int
    msg: str


@dataclass(slots=True)
class LeaseEvent(Event):
    """Base of LeaseGrant, LeaseDeny, LeaseRevoke."""

    lease_class: int
    reason: int
    holder_id: int
    holder_uid: int
    holder_pid: int
    holder_name: str

    @property
    def lease(self) -> str:
        """``"input"``, ``"power"`` or ``"memwrite"``."""
        return LEASE_CLASSES[self.lease_class]


@dataclass(slots=True)
class LeaseGrant(LeaseEvent):
    """A control got a lease (broadcast)."""


@dataclass(slots=True)
class LeaseDeny(LeaseEvent):
    """Your LEASE_ACQUIRE was refused: the holder fields say who has it."""


@dataclass(slots=True)
class LeaseRevoke(LeaseEvent):
    """A lease ended; ``reason`` in REVOKE_REASONS."""


@dataclass(slots=True)
class Opaque(Event):
    """An event with an adapter-owned body layout (``codec != 0``)."""

    codec: int
    body: bytes


def decode(hdr: tuple, body: memoryview, vm: Optional[str]) -> Event:
    """The typed event for a checked header and its body."""
    kind, source, codec, prio, _r0, flags, ep, peer, corr, seq, ts, _cr3, _bl, _r1 = hdr
    base = (kind, ep, vm, source, prio, flags, peer, corr, seq, ts)
    if codec:
        return Opaque(*base, codec, bytes(body))
    if kind == w.STATUS:
        return Status(*base, *w.status_body(body))
    if kind == w.ACT_ACK:
        return Ack(*base, *w.ack_body(body))
    if kind == w.ROSTER:
        return Roster(*base, *w.roster_body(body))
    if kind == w.MEMCTX:
        *mb, kbase = w.memctx_body(body)
        return Memctx(*base, *mb, bool(flags & w.F_HAS_FD), kbase)
    if kind == w.DIAG:
        return Diag(*base, *w.diag_body(body))
    cls = LeaseGrant if kind == w.LEASE_GRANT else LeaseDeny if kind == w.LEASE_DENY else LeaseRevoke
    return cls(*base, *w.lease_event_body(body))


EVENT_CLASSES = {Roster: w.ROSTER, Memctx: w.MEMCTX, Status: w.STATUS, Ack: w.ACT_ACK, Diag: w.DIAG,
                 LeaseGrant: w.LEASE_GRANT, LeaseDeny: w.LEASE_DENY, LeaseRevoke: w.LEASE_REVOKE}
