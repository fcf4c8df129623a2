# SPDX-License-Identifier: MIT
"""The vmsig socket protocol, versions 1 and 2, in pure Python (docs/protocol.md).

Encoders for what a control sends and a checked decoder for what the daemon
sends. Every check the document lists for a client is made here; a failed
one raises :class:`vmsig.ProtocolError` and the connection must be closed.
Nothing here does I/O.
"""

from __future__ import annotations

import struct
from typing import Optional, Tuple

from .errors import ProtocolError

# ---- frames (§2) ----
PREFIX = struct.Struct("<IHH")
PREFIX_LEN = 8
HELLO, WELCOME, ERROR, EVENT, SUBSCRIBE, UNSUBSCRIBE, REPLY = 1, 2, 3, 4, 5, 6, 7
MAGIC = 0x47534D56
VERSION_MIN = 1
VERSION_MAX = 2  # 2: a CMD_MEMWRITE may take its source from a passed fd (§7.2)
VERSION_FD = 2
HDR_LEN = 56
BODY_MAX = 456
PAYLOAD_MAX = HDR_LEN + BODY_MAX
FRAME_MAX = PREFIX_LEN + PAYLOAD_MAX
NAME_MAX = 64
MSG_MAX = 160
INLINE_MAX = BODY_MAX - 16  # CMD_MEMWRITE inline data
MEMWRITE_FD_MIN = 65536  # from here up through the staging memfd, as the C client (client.h)
U64_MAX = (1 << 64) - 1

# s->c payload lengths; EVENT is checked against its header
_S2C_LEN = {WELCOME: 28, ERROR: 168, REPLY: 176}

_WELCOME = struct.Struct("<HHIIIIII")
_ERROR = struct.Struct("<iI160s")
_REPLY = struct.Struct("<QHHi160s")
_HELLO = struct.Struct("<IHHI64s")
_SUBSCRIBE = struct.Struct("<QIIQ")
_UNSUBSCRIBE = struct.Struct("<QII")
HDR = struct.Struct("<HBBBBHIIQQQQII")

# ---- kinds (§5.1) ----
ROSTER, MEMCTX, STATUS, ACT_ACK, DIAG, LEASE_GRANT, LEASE_DENY, LEASE_REVOKE = range(1, 9)
MOVE_ABS, MOVE_REL, BUTTON, KEY, WHEEL = 32, 33, 34, 35, 36
CMD_POWER, CMD_STATUS_QUERY, CMD_MEMWRITE = 40, 41, 48
LEASE_ACQUIRE, LEASE_RELEASE = 56, 57
UP_KINDS = frozenset(range(1, 9))
UP_MASK = 0x1FE
UP_BODY_LEN = {ROSTER: 72, MEMCTX: 408, STATUS: 168, ACT_ACK: 176, DIAG: 168,
               LEASE_GRANT: 80, LEASE_DENY: 80, LEASE_REVOKE: 80}
KIND_NAMES = {ROSTER: "ROSTER", MEMCTX: "MEMCTX", STATUS: "STATUS", ACT_ACK: "ACT_ACK",
              DIAG: "DIAG", LEASE_GRANT: "LEASE_GRANT", LEASE_DENY: "LEASE_DENY",
              LEASE_REVOKE: "LEASE_REVOKE", MOVE_ABS: "MOVE_ABS", MOVE_REL: "MOVE_REL",
              BUTTON: "BUTTON", KEY: "KEY", WHEEL: "WHEEL", CMD_POWER: "CMD_POWER",
              CMD_STATUS_QUERY: "CMD_STATUS_QUERY", CMD_MEMWRITE: "CMD_MEMWRITE",
              LEASE_ACQUIRE: "LEASE_ACQUIRE", LEASE_RELEASE: "LEASE_RELEASE"}

# sources (seams)
SRC_CORE, SRC_MEMCTX, SRC_INPUT, SRC_VMHOST = 0, 1, 2, 3

# ---- flags (§5.3) ----
F_FF, F_SRC_PAYLOAD, F_DROPPABLE, F_RETAINED, F_HAS_FD = 0x01, 0x02, 0x04, 0x08, 0x10
_S2C_FLAGS = F_DROPPABLE | F_RETAINED | F_HAS_FD

# ---- priorities (§8.7) ----
PRIO_URGENT, PRIO_HIGH, PRIO_NORMAL, PRIO_BULK = 32, 64, 128, 224

# ---- capabilities (§8.1) ----
CAP_ROSTER, CAP_MEMCTX, CAP_STATUS, CAP_INPUT, CAP_POWER, CAP_MEMWRITE = 1, 2, 4, 8, 16, 32
CAP_ALL = 0x3F

# lease classes
LEASE_INPUT, LEASE_POWER, LEASE_MEMWRITE = 0, 1, 2

_ROSTER_B = struct.Struct("<BBBBI64s")
_MEMCTX_HEAD = struct.Struct("<QQBBBBI")
_RANGE = struct.Struct("<QQQ")
_STATUS_B = struct.Struct("<B7s160s")
_ACK_B = struct.Struct("<iHHQ160s")
_DIAG_B = struct.Struct("<iI160s")
_LEASE_B = struct.Struct("<BBHIIi64s")
_INPUT_B = struct.Struct("<iiIiI")
_MEMWRITE_B = struct.Struct("<QII")


def cstr(raw: bytes, what: str) -> str:
    """A char[N] field: must hold a NUL; the bytes after it are ignored."""
    nul = raw.find(b"\0")
    if nul < 0:
        raise ProtocolError(f"vmsigd sent an unterminated {what}")
    return raw[:nul].decode("utf-8", "replace")


def _pad(s: str, n: int, what: str) -> bytes:
    b = s.encode("utf-8")
    if len(b) >= n or b"\0" in b:
        raise ValueError(f"{what} must be at most {n - 1} bytes without NUL, got {len(b)}")
    return b


# ---- encoders (c->s) ----

def hello(name: str, version_max: int = VERSION_MAX) -> bytes:
    """HELLO offering versions 1..version_max (§3.1)."""
    return PREFIX.pack(76, HELLO, 0) + _HELLO.pack(MAGIC, VERSION_MIN, version_max, 0,
                                                    _pad(name, NAME_MAX, "client name"))


def subscribe(corr: int, endpoint: int, kinds: int) -> bytes:
    return PREFIX.pack(24, SUBSCRIBE, 0) + _SUBSCRIBE.pack(corr, endpoint, 0, kinds)


def unsubscribe(corr: int, endpoint: int) -> bytes:
    return PREFIX.pack(16, UNSUBSCRIBE, 0) + _UNSUBSCRIBE.pack(corr, endpoint, 0)


def event(kind: int, source: int, endpoint: int, corr: int, body: bytes = b"",
          flags: int = 0, priority: int = PRIO_NORMAL, cr3: int = 0) -> bytes:
    """One EVENT frame (a command); peer, seq and ts_ns are sent as 0."""
    n = len(body)
    if n > BODY_MAX:
        raise ValueError(f"event body of {n} bytes is over {BODY_MAX}")
    return (PREFIX.pack(HDR_LEN + n, EVENT, 0)
            + HDR.pack(kind, source, 0, priority, 0, flags, endpoint, 0, corr, 0, 0, cr3, n, 0) + body)


def input_body(x: int = 0, y: int = 0, code: int = 0, value: int = 0) -> bytes:
    return _INPUT_B.pack(x, y, code, value, 0)


def lease_body(cls: int) -> bytes:
    return bytes([cls]) + bytes(79)


def power_body(op: int) -> bytes:
    return struct.pack("<I", op)


def memwrite_head(addr: int, length: int, phys: bool) -> bytes:
    return _MEMWRITE_B.pack(addr, length, 1 if phys else 0)


def memwrite_fd_body(addr: int, length: int, phys: bool, src_off: int) -> bytes:
    """The 24-byte body of a CMD_MEMWRITE with HAS_FD (version 2, §7.2)."""
    return _MEMWRITE_B.pack(addr, length, 1 if phys else 0) + struct.pack("<Q", src_off)


# ---- decoders (s->c) ----

def check_prefix(length: int, ftype: int, reserved: int) -> None:
    """§2: judge type, direction and length from the prefix alone."""
    if reserved:
        raise ProtocolError("vmsigd sent a frame with a non-zero reserved prefix field")
    if ftype == EVENT:
        if not HDR_LEN <= length <= PAYLOAD_MAX:
            raise ProtocolError(f"vmsigd sent an EVENT frame of {length} bytes")
        return
    want = _S2C_LEN.get(ftype)
    if want is None:
        raise ProtocolError(f"vmsigd sent frame type {ftype} (unknown or wrong direction)")
    if length != want:
        raise ProtocolError(f"vmsigd sent frame type {ftype} with {length} bytes, not {want}")


def decode_welcome(p: memoryview, version_max: int = VERSION_MAX) -> Tuple[int, int, int, int, int, int, int]:
    """(version, control_id, caps, uid, body_max, tail_max, queue_bytes),
    checked as §3.2 says; version_max is what our HELLO offered."""
    ver, res, cid, caps, uid, body_max, tail_max, qbytes = _WELCOME.unpack_from(p)
    if not VERSION_MIN <= ver <= version_max:
        raise ProtocolError(f"vmsigd sent a WELCOME with version {ver}, outside the {VERSION_MIN}..{version_max} "
                            "we offered")
    if res or not cid or caps & ~CAP_ALL or body_max != BODY_MAX \
            or not 0 < tail_max <= 64 << 20 or not qbytes:
        raise ProtocolError("vmsigd sent a malformed WELCOME")
    return ver, cid, caps, uid, body_max, tail_max, qbytes


def decode_error(p: memoryview) -> Tuple[int, str]:
    code, res, msg = _ERROR.unpack_from(p)
    if res or not -4095 <= code <= -1:
        raise ProtocolError("vmsigd sent a malformed ERROR")
    return code, cstr(msg, "ERROR message")


def decode_reply(p: memoryview) -> Tuple[int, int, int, str]:
    """(corr, request_type, result, msg)."""
    corr, rtype, res, result, msg = _REPLY.unpack_from(p)
    if res or rtype not in (SUBSCRIBE, UNSUBSCRIBE) or not -4095 <= result <= 0:
        raise ProtocolError("vmsigd sent a malformed REPLY")
    return corr, rtype, result, cstr(msg, "REPLY message")


def check_event(length: int, h: tuple) -> None:
    """§3.7: the receiver checks of an s->c event header, plus the body size."""
    kind, source, codec, _prio, res0, flags, _ep, _peer, _corr, _seq, _ts, cr3, body_len, res1 = h
    if res0 or res1:
        raise ProtocolError("vmsigd sent an event with non-zero reserved header bytes")
    if body_len > BODY_MAX or length != HDR_LEN + body_len:
        raise ProtocolError(f"vmsigd sent an event whose body_len {body_len} does not match its frame")
    if kind not in UP_KINDS:
        raise ProtocolError(f"vmsigd sent event kind {kind} (unknown or a command)")
    if source > 3:
        raise ProtocolError(f"vmsigd sent an event with source {source}")
    if flags & ~_S2C_FLAGS:
        raise ProtocolError(f"vmsigd sent an event with flags 0x{flags:x} not allowed to a client")
    if cr3:
        raise ProtocolError("vmsigd sent an event with a non-zero cr3")
    if flags & F_HAS_FD and kind != MEMCTX:
        raise ProtocolError(f"vmsigd sent HAS_FD on a {KIND_NAMES[kind]}")
    if codec == 0 and body_len != UP_BODY_LEN[kind]:
        raise ProtocolError(f"vmsigd sent a {KIND_NAMES[kind]} body of {body_len} bytes, "
                            f"not {UP_BODY_LEN[kind]}")


def roster_body(b: memoryview) -> Tuple[int, int, int, str]:
    change, seams, run_state, _r, _r2, name = _ROSTER_B.unpack_from(b)
    return change, seams, run_state, cstr(name, "ROSTER name")


MemctxBody = Tuple[int, int, bool, int, int, Tuple[Tuple[int, int, int], ...], Optional[int]]
KBASE_TOP = 0xFFFFF00000000000


def kbase_decode(kernel_base_pg: int) -> Optional[int]:
    """The kernel base VA of a MEMCTX's ``kernel_base_pg`` (§5.2); None for 0 (unknown)."""
    return KBASE_TOP | kernel_base_pg << 12 if kernel_base_pg else None


def memctx_body(b: memoryview) -> MemctxBody:
    """(epoch, kernel_root, valid, paging, os_kind, ranges, kernel_base);
    kernel_base is None when unknown or in an invalidation."""
    epoch, root, valid, paging, os_kind, nranges, kbase_pg = _MEMCTX_HEAD.unpack_from(b)
    if nranges > 16:
        raise ProtocolError(f"vmsigd sent a MEMCTX with {nranges} ranges (at most 16)")
    ranges = tuple(_RANGE.unpack_from(b, 24 + 24 * i) for i in range(nranges))
    return epoch, root, bool(valid), paging, os_kind, ranges, kbase_decode(kbase_pg) if valid else None


def status_body(b: memoryview) -> Tuple[int, str]:
    run_state, _r, reason = _STATUS_B.unpack_from(b)
    return run_state, cstr(reason, "STATUS reason")


def ack_body(b: memoryview) -> Tuple[int, int, int, str]:
    result, cmd_kind, _r, value, msg = _ACK_B.unpack_from(b)
    if not -4095 <= result <= 0:
        raise ProtocolError(f"vmsigd sent an ACT_ACK with result {result}")
    return result, cmd_kind, value, cstr(msg, "ACT_ACK message")


def diag_body(b: memoryview) -> Tuple[int, str]:
    code, _r, msg = _DIAG_B.unpack_from(b)
    return code, cstr(msg, "DIAG message")


def lease_event_body(b: memoryview) -> Tuple[int, int, int, int, int, str]:
    """(class, reason, holder_id, holder_uid, holder_pid, holder_name)."""
    cls, reason, _r, hid, huid, hpid, name = _LEASE_B.unpack_from(b)
    if cls >= 3:
        raise ProtocolError(f"vmsigd sent a lease event of class {cls}")
    return cls, reason, hid, huid, hpid, cstr(name, "lease holder name")
