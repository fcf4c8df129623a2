# SPDX-License-Identifier: MIT
"""The test pattern of `vgpu-stream --source pattern` (docs/vgpu-stream.md
§10) and vgpu_checksum (include/vgpu/stream.h), recomputed in Python so the
tests check frames against the documented formula, not against the C code."""

from __future__ import annotations

import struct

MASK = (1 << 64) - 1


def _step(h: int, w: int) -> int:
    h = ((h ^ w) * 0x100000001B3) & MASK
    return ((h << 29) | (h >> 35)) & MASK


def checksum(data: bytes) -> int:
    """vgpu_checksum (docs/vgpu-stream.md section 5): four lanes over 32-byte
    blocks of little-endian u64 words (word k of a block feeds lane k), a
    trailing partial block zero-padded, then the length and the lanes folded."""
    n = len(data)
    if n % 32:
        data = data + bytes(32 - n % 32)
    lanes = [0xCBF29CE484222325 + k for k in range(4)]
    for w0, w1, w2, w3 in struct.iter_unpack("<4Q", data):
        lanes = [_step(lanes[0], w0), _step(lanes[1], w1), _step(lanes[2], w2), _step(lanes[3], w3)]
    r = n
    for h in lanes:
        r = _step(r, h)
    return r


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
