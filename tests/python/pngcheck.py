# SPDX-License-Identifier: MIT
"""A small PNG reader for the tests (standard library only): checks the
signature, every chunk's CRC and the IHDR, undoes the five scanline filters,
and returns (width, height, RGB bytes) of an 8-bit RGB, non-interlaced PNG."""

from __future__ import annotations

import struct
import zlib


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def read_png(blob: bytes):
    assert blob[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    pos, idat, ihdr, ended = 8, b"", None, False
    while pos < len(blob):
        (n,) = struct.unpack(">I", blob[pos:pos + 4])
        kind = blob[pos + 4:pos + 8]
        body = blob[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", blob[pos + 8 + n:pos + 12 + n])
        assert len(body) == n and crc == zlib.crc32(kind + body), f"chunk {kind!r}: bad length or CRC"
        pos += 12 + n
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            ended = True
            break
    assert ended and pos == len(blob), "no IEND at the end"
    assert ihdr is not None, "no IHDR"
    w, h, depth, color, comp, filt, interlace = ihdr
    assert (depth, color, comp, filt, interlace) == (8, 2, 0, 0, 0), f"not 8-bit RGB: {ihdr}"
    raw = zlib.decompress(idat)
    row = 3 * w
    assert len(raw) == h * (row + 1), "wrong amount of image data"
    out = bytearray()
    prev = bytearray(row)
    for y in range(h):
        ftype = raw[y * (row + 1)]
        cur = bytearray(raw[y * (row + 1) + 1:(y + 1) * (row + 1)])
        for i in range(row):
            a = cur[i - 3] if i >= 3 else 0
            b = prev[i]
            c = prev[i - 3] if i >= 3 else 0
            if ftype == 1:
                cur[i] = (cur[i] + a) & 255
            elif ftype == 2:
                cur[i] = (cur[i] + b) & 255
            elif ftype == 3:
                cur[i] = (cur[i] + ((a + b) >> 1)) & 255
            elif ftype == 4:
                cur[i] = (cur[i] + _paeth(a, b, c)) & 255
            else:
                assert ftype == 0, f"row {y}: filter type {ftype}"
                break
        out += cur
        prev = cur
    return w, h, bytes(out)
