# SPDX-License-Identifier: MIT
"""ctypes binding of the few libvmie calls the package needs (include/vmie).

The library is ``libvmie.so.0`` (Debian package libvmie0), or the path in
``$VMSIG_LIBVMIE`` (a build tree: ``build/src/vmie/libvmie.so.0``).
"""

from __future__ import annotations

import ctypes
import os
from typing import Optional

RAM_NO_MMAP = 1


class Range(ctypes.Structure):
    _fields_ = [("gpa", ctypes.c_uint64), ("len", ctypes.c_uint64), ("file_offset", ctypes.c_uint64)]


class AddressSpace(ctypes.Structure):
    """struct vmie_as"""

    _fields_ = [("ram", ctypes.c_void_p), ("tlb", ctypes.c_void_p), ("root", ctypes.c_uint64),
                ("epoch", ctypes.c_uint64), ("levels", ctypes.c_uint8), ("maxphyaddr", ctypes.c_uint8)]


class Xlate(ctypes.Structure):
    """struct vmie_xlate"""

    _fields_ = [("gpa", ctypes.c_uint64), ("page_size", ctypes.c_uint64), ("writable", ctypes.c_bool),
                ("user", ctypes.c_bool), ("nx", ctypes.c_bool)]


_lib: Optional[ctypes.CDLL] = None


def lib() -> ctypes.CDLL:
    """Load libvmie once and declare the prototypes used."""
    global _lib
    if _lib is not None:
        return _lib
    path = os.environ.get("VMSIG_LIBVMIE") or "libvmie.so.0"
    try:
        L = ctypes.CDLL(path, use_errno=False)
    except OSError as e:
        raise ImportError(f"cannot load libvmie ({path}): {e}; install libvmie0 or set VMSIG_LIBVMIE") from e
    P, u64, sz, i = ctypes.POINTER, ctypes.c_uint64, ctypes.c_size_t, ctypes.c_int
    vp = ctypes.c_void_p
    L.vmie_ram_open_fd.argtypes = [i, P(Range), sz, ctypes.c_uint, P(vp)]
    L.vmie_ram_open_fd.restype = i
    L.vmie_ram_free.argtypes = [vp]
    L.vmie_ram_free.restype = vp
    L.vmie_ram_read.argtypes = [vp, u64, ctypes.c_char_p, sz]
    L.vmie_ram_read.restype = i
    L.vmie_tlb_new.argtypes = [sz, u64, P(vp)]
    L.vmie_tlb_new.restype = i
    L.vmie_tlb_free.argtypes = [vp]
    L.vmie_tlb_free.restype = vp
    L.vmie_tlb_flush.argtypes = [vp]
    L.vmie_tlb_flush.restype = None
    L.vmie_translate.argtypes = [P(AddressSpace), u64, P(Xlate)]
    L.vmie_translate.restype = i
    L.vmie_read_virt.argtypes = [P(AddressSpace), u64, ctypes.c_char_p, sz, P(sz)]
    L.vmie_read_virt.restype = i
    L.vmie_read_str.argtypes = [P(AddressSpace), u64, ctypes.c_char_p, sz, P(sz)]
    L.vmie_read_str.restype = i
    _lib = L
    return L
