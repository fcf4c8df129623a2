# SPDX-License-Identifier: MIT
"""ctypes binding of libvgpu-perception (include/vgpu/perception.h).

The library is ``libvgpu-perception.so.0`` (Debian package
libvgpu-perception0), or the path in ``$VMSIG_LIBVGPU`` (a build tree:
``build/src/vgpu/perception/libvgpu-perception.so.0``). It needs libvmie,
which is loaded first (see _vmie) so both agree on one copy.
"""

from __future__ import annotations

import ctypes
import os
from typing import Optional

from . import _vmie

VERIFY = 1  # VGPU_PERCEPTION_VERIFY
STATE_READY = 1

FORMATS = {1: "BGRA8888", 2: "BGRX8888"}  # enum vgpu_format

OP_PAUSE, OP_FPS_CAP, OP_REGION, OP_FULL_FRAME = 1, 2, 3, 4  # enum vgpu_op

u32, u64 = ctypes.c_uint32, ctypes.c_uint64


class Options(ctypes.Structure):
    """struct vgpu_perception_options"""

    _fields_ = [("flags", ctypes.c_uint), ("torn_retries", u32), ("rescan_min_ms", u32), ("stale_ms", u32),
                ("scan_chunk_size", u32)]


class FrameInfo(ctypes.Structure):
    """struct vgpu_frame_info"""

    _fields_ = [("seq", u64), ("timestamp_ns", u64), ("nonce", u64), ("geometry_gen", u32), ("width", u32),
                ("height", u32), ("stride", u32), ("format", u32), ("data_len", u32), ("slot", u32),
                ("checksum", u64)]


class ProducerInfo(ctypes.Structure):
    """struct vgpu_producer_info"""

    _fields_ = [("nonce", u64), ("pid", u32), ("flags", u32), ("heartbeat_ns", u64), ("geometry_gen", u32),
                ("width", u32), ("height", u32), ("stride", u32), ("format", u32), ("nslots", u32),
                ("frame_interval_us", u32), ("npages", u32), ("latest_seq", u64), ("frames_published", u64),
                ("frames_dropped", u64), ("ctrl_ack_seq", u32), ("ctrl_ack_result", ctypes.c_int32),
                ("page0_gpa", u64)]


class Control(ctypes.Structure):
    """struct vgpu_control (64 bytes, written to the guest as they are)"""

    _fields_ = [("req_seq", u32), ("op", u32), ("arg", u32 * 4), ("reserved", u32 * 9), ("req_seq_check", u32)]


class Stats(ctypes.Structure):
    """struct vgpu_perception_stats"""

    _fields_ = [(n, u64) for n in ("scans", "scan_bytes", "scan_ns", "rediscoveries", "frames", "torn",
                                   "checksum_errors", "tag_mismatches", "duplicate_pages")]


assert ctypes.sizeof(FrameInfo) == 64 and ctypes.sizeof(Control) == 64 and ctypes.sizeof(ProducerInfo) == 96

_lib: Optional[ctypes.CDLL] = None


def lib() -> ctypes.CDLL:
    """Load libvgpu-perception once and declare its prototypes."""
    global _lib
    if _lib is not None:
        return _lib
    _vmie.lib()
    path = os.environ.get("VMSIG_LIBVGPU") or "libvgpu-perception.so.0"
    try:
        L = ctypes.CDLL(path)
    except OSError as e:
        raise ImportError(f"cannot load libvgpu-perception ({path}): {e}; install libvgpu-perception0 "
                          "or set VMSIG_LIBVGPU") from e
    P, i, vp, sz = ctypes.POINTER, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t
    protos = {
        "vgpu_perception_new": ([vp, P(Options), P(vp)], i),
        "vgpu_perception_free": ([vp], vp),
        "vgpu_perception_reset": ([vp, vp], i),
        "vgpu_perception_discover": ([vp], i),
        "vgpu_perception_state": ([vp], i),
        "vgpu_perception_producer": ([vp, P(ProducerInfo)], i),
        "vgpu_perception_read": ([vp, vp, sz, P(FrameInfo)], i),
        "vgpu_perception_wait": ([vp, u64, u32, u32, P(u32)], i),
        "vgpu_perception_control": ([vp, u32, P(u32 * 4), P(Control), P(u64), P(u32)], i),
        "vgpu_perception_control_ack": ([vp, u32, P(ctypes.c_int32)], i),
        "vgpu_perception_stats": ([vp, P(Stats)], None),
    }
    for name, (args, res) in protos.items():
        fn = getattr(L, name)
        fn.argtypes = args
        fn.restype = res
    _lib = L
    return L
