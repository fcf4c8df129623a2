# SPDX-License-Identifier: MIT
"""The test pattern of `vgpu-stream --source pattern` (docs/vgpu-stream.md
§10) and vgpu_checksum (include/vgpu/stream.h), recomputed in Python so the
tests check frames against the documented formula, not against the C code."""

from __future__ import annotations

import struct

MASK = (1 << 64) - 1


def checksum(data: bytes) -> int:
    """vgpu_checksum: FNV-style over little-endian u64 words, a trailing
    partial word zero-padded, then xor the length."""
    n = len(data)
    whole = n - n % 8
    h = 0xCBF29CE484222325
    for (w,) in struct.iter_unpack("<Q", data[:whole]):
        h = ((h ^ w) * 0x100000001B3) & MASK
    if whole < n:
        (w,) = struct.unpack("<Q", data[whole:].ljust(8, b"\0"))
        h = ((h ^ w) * 0x100000001B3) & MASK
    return h ^ n


def pattern(width: int, height: int, n: int) -> bytes:
    """Frame n as BGRA bytes, stride width * 4, row 0 stamped."""
    out = bytearray(4 * width * height)
    xs = range(width)
    for y in range(height):
        row = bytearray(4 * width)
        row[0::4] = bytes((x + 4 * n) & 255 for x in xs)
        row[1::4] = bytes([(y + n) & 255]) * width
        row[2::4] = bytes((x ^ y ^ n) & 255 for x in xs)
        row[3::4] = b"\xff" * width
        out[4 * width * y:4 * width * (y + 1)] = row
    stamp = b"VGPUPAT1" + struct.pack("<QQ", n & MASK, checksum(bytes(out[4 * width:])))
    out[:24] = stamp
    return bytes(out)
