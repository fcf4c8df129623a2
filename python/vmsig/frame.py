# SPDX-License-Identifier: MIT
"""The VM's screen: frames of an in-guest vgpu-stream producer
(docs/vgpu-stream.md), read out of guest RAM with libvgpu-perception over
the VM's read-only memory context.

``vm.frame()`` returns a :class:`Frame`: its metadata, the pixel bytes in
the producer's format, ``save_png()`` (standard library only) and
``to_numpy()``. The reader behind it (one per VM and bus) is kept for the
memory context's epoch: the full RAM scan that finds the producer happens
once, and again only after a guest reset or when the producer went away.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Union

from . import _vgpu, _vmie
from .errors import FrameError, NoProducerError, strerror

if TYPE_CHECKING:  # pragma: no cover
    from .bus import _MemState

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Frame:
    """One complete frame, consistent from its first byte to its last.

    ``seq``: the producer's frame number (1, 2, 3 ... within one producer
    run, ``nonce``); ``timestamp_ns``: the producer's monotonic clock when it
    published the frame (guest time); ``width``, ``height``, ``stride``
    (bytes per row); ``format``: ``"BGRA8888"`` or ``"BGRX8888"`` (4 bytes
    a pixel: blue, green, red, alpha or undefined); ``data``: ``stride *
    height`` bytes in that format; ``checksum``: as the producer published it
    (and verified by the reader)."""

    seq: int
    timestamp_ns: int
    width: int
    height: int
    stride: int
    format: str
    nonce: int
    checksum: int
    data: bytes = field(repr=False)

    def pixel(self, x: int, y: int) -> tuple:
        """(r, g, b) of pixel (x, y)."""
        if not (0 <= x < self.width and 0 <= y < self.height):
            raise IndexError(f"pixel ({x}, {y}) is outside the {self.width}x{self.height} frame")
        o = y * self.stride + 4 * x
        b, g, r = self.data[o], self.data[o + 1], self.data[o + 2]
        return (r, g, b)

    def rgb(self) -> bytes:
        """The pixels as packed RGB bytes, 3 a pixel, rows without padding."""
        w, h, s = self.width, self.height, self.stride
        row = 4 * w
        src = self.data if s == row else b"".join(self.data[y * s:y * s + row] for y in range(h))
        out = bytearray(3 * w * h)
        out[0::3] = src[2::4]  # the producer's bytes are B, G, R, A/X
        out[1::3] = src[1::4]
        out[2::3] = src[0::4]
        return bytes(out)

    def to_png(self, level: int = 6) -> bytes:
        """The frame as an RGB PNG file's bytes (8 bits a channel)."""
        w, h = self.width, self.height
        rgb = self.rgb()
        n = 3 * w
        # every scanline starts with filter type 0 (none)
        raw = b"".join(b"\0" + rgb[y * n:(y + 1) * n] for y in range(h))

        def chunk(kind: bytes, body: bytes) -> bytes:
            return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

        return (PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, level)) + chunk(b"IEND", b""))

    def save_png(self, path: Union[str, "os.PathLike[str]"], level: int = 6) -> None:
        """Write the frame to ``path`` as an RGB PNG. The file appears whole
        or not at all (written to a temporary name, then renamed)."""
        path = os.fspath(path)
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(self.to_png(level))
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def to_numpy(self) -> Any:
        """A read-only numpy view of the pixels, shape (height, width, 4),
        dtype uint8, channels in the producer's order (B, G, R, A/X). Raises
        ImportError when numpy is not installed."""
        try:
            import numpy
        except ImportError as e:
            raise ImportError("Frame.to_numpy() needs numpy (apt-get install python3-numpy, or "
                              "pip install numpy); Frame.data and Frame.rgb() work without it") from e
        flat = numpy.frombuffer(self.data, dtype=numpy.uint8, count=self.stride * self.height)
        return flat.reshape(self.height, self.stride)[:, :4 * self.width].reshape(self.height, self.width, 4)

    @property
    def array(self) -> Any:
        """Same as :meth:`to_numpy`."""
        return self.to_numpy()


WHY = {
    -errno.ENOENT: "no vgpu-stream producer found in guest RAM (is vgpu-stream running in the guest?)",
    -errno.ENODATA: "the producer has not published a frame yet",
    -errno.EAGAIN: "every attempt found the frame being rewritten (torn)",
    -errno.ESTALE: "the producer's region moved during the read (restart or resize)",
    -errno.ETIMEDOUT: "no new frame",
}


def frame_error(code: int, vm: str) -> FrameError:
    text = f"'{vm}': {WHY.get(code) or strerror(code)}"
    if code == -errno.ENOENT:
        return NoProducerError(text, code)
    return FrameError(text, code)


class FrameSource:
    """One VM's libvgpu-perception reader over its own read-only view of the
    guest RAM, for one memory-context epoch at a time (kept by the bus)."""

    def __init__(self) -> None:
        self._L = _vgpu.lib()
        self._VL = _vmie.lib()
        self.p = ctypes.c_void_p()
        self.ram = ctypes.c_void_p()
        self.epoch = -1
        self.info = _vgpu.FrameInfo()
        self._buf = ctypes.create_string_buffer(0)

    def sync(self, m: "_MemState", vm: str) -> None:
        """Follow the memory context: a new epoch is a new RAM view and a
        new discovery (vgpu_perception_reset); the same epoch keeps both."""
        if self.p and m.epoch == self.epoch:
            return
        ev = m.body
        assert ev is not None and m.fd >= 0
        arr = (_vmie.Range * len(ev.ranges))(*[_vmie.Range(*r) for r in ev.ranges])
        ram = ctypes.c_void_p()
        # Safe mode: the QEMU user may shrink the file; a mapping would then
        # kill the process with SIGBUS.
        r = self._VL.vmie_ram_open_fd(m.fd, arr, len(ev.ranges), _vmie.RAM_NO_MMAP, ctypes.byref(ram))
        if r < 0:
            raise FrameError(f"cannot open the guest RAM of '{vm}': {strerror(r)}", r)
        if self.p:
            r = self._L.vgpu_perception_reset(self.p, ram)
        else:
            opts = _vgpu.Options(flags=_vgpu.VERIFY)
            r = self._L.vgpu_perception_new(ram, ctypes.byref(opts), ctypes.byref(self.p))
        if r < 0:
            self._VL.vmie_ram_free(ram)
            raise FrameError(f"libvgpu-perception for '{vm}': {strerror(r)}", r)
        self._VL.vmie_ram_free(self.ram)
        self.ram = ram
        self.epoch = m.epoch

    def read(self) -> int:
        """The newest complete frame into the buffer (grown as needed)."""
        while True:
            buf = self._buf
            r = self._L.vgpu_perception_read(self.p, buf, len(buf), ctypes.byref(self.info))
            if r != -errno.ENOSPC:
                return r
            self._buf = ctypes.create_string_buffer(self.info.data_len)

    def frame(self) -> Frame:
        i = self.info
        return Frame(seq=i.seq, timestamp_ns=i.timestamp_ns, width=i.width, height=i.height, stride=i.stride,
                     format=_vgpu.FORMATS.get(i.format, f"format-{i.format}"), nonce=i.nonce,
                     checksum=i.checksum, data=ctypes.string_at(self._buf, i.data_len))

    def wait(self, after_seq: int, seconds: float) -> int:
        ms = max(1, min(int(seconds * 1000), 0xFFFFFFFF))
        return self._L.vgpu_perception_wait(self.p, after_seq, ms, 0, None)

    def producer(self) -> Optional[_vgpu.ProducerInfo]:
        pi = _vgpu.ProducerInfo()
        return pi if self._L.vgpu_perception_producer(self.p, ctypes.byref(pi)) == 0 else None

    def stats(self) -> dict:
        st = _vgpu.Stats()
        self._L.vgpu_perception_stats(self.p, ctypes.byref(st))
        return {name: getattr(st, name) for name, _ in _vgpu.Stats._fields_}

    def control(self, op: int, args: tuple) -> tuple:
        """(0 or a negative errno, block bytes, guest-physical address, req_seq)
        of a new request."""
        block = _vgpu.Control()
        gpa = ctypes.c_uint64()
        seq = ctypes.c_uint32()
        a = (ctypes.c_uint32 * 4)(*args)
        r = self._L.vgpu_perception_control(self.p, op, ctypes.byref(a), ctypes.byref(block), ctypes.byref(gpa),
                                            ctypes.byref(seq))
        if r < 0:
            return r, b"", 0, 0
        return 0, bytes(block), gpa.value, seq.value

    def control_ack(self, req_seq: int) -> tuple:
        """(1 acknowledged | 0 not yet | negative errno, the producer's result)."""
        res = ctypes.c_int32()
        r = self._L.vgpu_perception_control_ack(self.p, req_seq, ctypes.byref(res))
        return r, res.value

    def close(self) -> None:
        if self.p:
            self._L.vgpu_perception_free(self.p)
            self.p = ctypes.c_void_p()
        if self.ram:
            self._VL.vmie_ram_free(self.ram)
            self.ram = ctypes.c_void_p()
        self.epoch = -1

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
