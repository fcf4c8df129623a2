# SPDX-License-Identifier: MIT
"""Guest memory through a memory context (MEMCTX), read with libvmie.

``vm.memory()`` returns a :class:`Memory`. Reads walk the guest page tables
and copy bytes at C speed (libvmie, over the read-only RAM fd the daemon
passed); writes go to the daemon as CMD_MEMWRITE under the memwrite lease.

A Memory belongs to one *epoch* of the VM's memory context. Once the daemon
says that epoch ended (guest reset, re-probe, VM gone), every call raises
:class:`vmsig.StaleContextError`; take a new one with ``vm.memory()``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Protocol, Type, TypeVar, Union

from . import _vmie
from .errors import GuestMemoryError, KernelBaseUnknown, StaleContextError, SymbolError, strerror
from .symbols import Symbols, split_spec

if TYPE_CHECKING:  # pragma: no cover
    from .bus import VM

S = TypeVar("S", bound=ctypes.Structure)


class HasFileno(Protocol):
    """An open file (or anything with ``fileno()``)."""

    def fileno(self) -> int: ...

OS_NAMES = {0: "unknown", 1: "linux", 2: "windows", 3: "synthetic"}
_SCRATCH = 1 << 16
_now = time.monotonic_ns
_pread = os.pread
_TTL_NS = 1_000_000_000  # as libvmie's VMIE_TLB_DEFAULT_TTL_NS


class _Closed:
    valid = False
    epoch = -1


_CLOSED = _Closed()


@dataclass(frozen=True)
class Translation:
    """Where a guest-virtual address lives: its guest-physical address, the
    size of the page that maps it and the page's permissions."""

    va: int
    gpa: int
    page_size: int
    writable: bool
    user: bool
    nx: bool


def _fail(code: int, what: str, addr: int) -> GuestMemoryError:
    why = {-errno.EFAULT: "not mapped (or a RAM hole)", -errno.ERANGE: "not a canonical address",
           -errno.ENXIO: "page tables outside guest RAM", -errno.EIO: "the RAM file shrank"}
    return GuestMemoryError(f"{what} at 0x{addr:x}: {why.get(code, strerror(code))}", code, addr)


class Memory:
    """One VM's guest memory at one epoch of its memory context.

    Attributes: ``vm`` (the VM), ``epoch``, ``kernel_root`` (normalised CR3
    of the guest kernel), ``paging`` (4 or 5 levels), ``os`` (``"linux"``,
    ``"windows"``, ``"synthetic"``, ``"unknown"``), ``ranges`` (guest-physical
    runs of the RAM fd), ``kernel_base`` (where the guest kernel's image
    starts, KASLR slide included, as the daemon found it without symbols;
    None if unknown) and ``symbols`` (the :class:`vmsig.Symbols` that
    :meth:`load_symbols` gave it, else None).

    Kernel symbols: ``mem.load_symbols("System.map")``, then
    ``mem.symbol("linux_banner")`` or ``mem.read_sym("linux_banner+0x10", n)``.

    Use it as a context manager, or call :meth:`close`, to let go of the RAM
    fd early; it is closed when collected otherwise.
    """

    __slots__ = ("vm", "epoch", "kernel_root", "paging", "os", "ranges", "kernel_base", "symbols", "_L", "_ram", "_tlb",
                 "_as", "_as_ref", "_spaces", "_bus", "_st", "_interval_ns", "_scratch", "_mv", "_done",
                 "_done_ref", "_read_virt", "_va", "_n", "_as_p", "_scratch_p", "_done_p", "_fd", "_pages",
                 "_xl", "_xl_ref", "__weakref__")

    def __init__(self, vm: "VM", fd: int, epoch: int, kernel_root: int, paging: int, os_kind: int,
                 ranges: tuple, mapped: bool = False, check_interval: float = 0.0001,
                 kernel_base: Optional[int] = None) -> None:
        L = _vmie.lib()
        self.vm = vm
        self.epoch = epoch
        self.kernel_root = kernel_root
        self.paging = paging
        self.os = OS_NAMES.get(os_kind, "unknown")
        self.ranges = ranges
        self.kernel_base: Optional[int] = kernel_base or None
        self.symbols: Optional[Symbols] = None
        self._L = L
        self._fd = -1
        self._ram = ctypes.c_void_p()
        self._tlb = ctypes.c_void_p()
        arr = (_vmie.Range * len(ranges))(*[_vmie.Range(*r) for r in ranges])
        # Safe mode (pread) unless asked: the QEMU user may shrink the file
        # under us, and a read through a mapping would then raise SIGBUS.
        r = L.vmie_ram_open_fd(fd, arr, len(ranges), 0 if mapped else _vmie.RAM_NO_MMAP,
                               ctypes.byref(self._ram))
        if r < 0:
            raise GuestMemoryError(f"cannot open the guest RAM of '{vm.name}': {strerror(r)}", r)
        r = L.vmie_tlb_new(0, 0, ctypes.byref(self._tlb))
        if r < 0:
            L.vmie_ram_free(self._ram)
            self._ram = ctypes.c_void_p()
            raise GuestMemoryError(f"cannot make a translation cache: {strerror(r)}", r)
        self._as = self._space(kernel_root)
        self._as_ref = ctypes.byref(self._as)
        self._spaces: dict = {}
        self._bus = vm._bus
        self._st = vm._bus._mem[vm.endpoint]  # the bus keeps it current
        self._interval_ns = int(check_interval * 1e9)
        self._scratch = ctypes.create_string_buffer(_SCRATCH)
        self._mv = memoryview(self._scratch).cast("B")
        self._done = ctypes.c_size_t(0)
        self._done_ref = ctypes.byref(self._done)
        # The hot path calls vmie_read_virt without argtypes conversions:
        # every argument is a ready ctypes object (pointers by address,
        # the VA and length in reused c_uint64 / c_size_t cells).
        self._read_virt = ctypes.CFUNCTYPE(ctypes.c_int)(("vmie_read_virt", L))
        self._va = ctypes.c_uint64(0)
        self._n = ctypes.c_size_t(0)
        self._as_p = ctypes.c_void_p(ctypes.addressof(self._as))
        self._scratch_p = ctypes.c_void_p(ctypes.addressof(self._scratch))
        self._done_p = ctypes.c_void_p(ctypes.addressof(self._done))
        # Safe mode's fastest path for reads within one page: libvmie
        # translates the page once (kept as long as libvmie's TLB keeps a
        # translation, 1 s), then os.pread copies from the same read-only fd.
        self._fd = -1 if mapped else os.dup(fd)
        self._pages: dict = {}
        self._xl = _vmie.Xlate()
        self._xl_ref = ctypes.byref(self._xl)

    def _space(self, root: int) -> _vmie.AddressSpace:
        return _vmie.AddressSpace(self._ram, self._tlb, root, self.epoch, 5 if self.paging == 5 else 4, 0)

    def _asp(self, cr3: int):
        if not cr3:
            return self._as_ref
        sp = self._spaces.get(cr3)
        if sp is None:
            if len(self._spaces) > 64:
                self._spaces.clear()
            sp = self._spaces[cr3] = ctypes.byref(self._space(cr3))
        return sp

    def _page(self, va: int, now: int):
        """(file offset, stamp) of va's 4 KiB page, or None (then libvmie's
        read reports the error or the slow case)."""
        if self._L.vmie_translate(self._as_ref, va & ~0xFFF, self._xl_ref) < 0:
            return None
        gpa = self._xl.gpa
        for base, length, off in self.ranges:
            if base <= gpa and gpa + 4096 <= base + length:
                if len(self._pages) >= 4096:
                    self._pages.clear()
                e = self._pages[va >> 12] = (off + gpa - base, now)
                return e
        return None

    def _live(self) -> None:
        """Raise unless this epoch is still current. Reads what the socket
        holds first, so an invalidation the daemon already sent is seen."""
        if not self._ram:
            raise ValueError("this Memory is closed")
        b = self._bus
        b._memctx_poll(self._interval_ns)
        st = self._st
        if not st.valid or st.epoch != self.epoch:
            raise StaleContextError(
                f"the memory context of '{self.vm.name}' (epoch {self.epoch}) ended: the guest reset "
                "or the VM left; call vm.memory() again", self.epoch)

    def _ok(self) -> None:
        st = self._st
        if not st.valid or st.epoch != self.epoch or _now() >= self._bus._memctx_due:
            self._live()

    def check(self) -> None:
        """Read the socket now and raise StaleContextError if this epoch
        ended (every other call does this at most every check_interval)."""
        if not self._ram:
            raise ValueError("this Memory is closed")
        self._bus._memctx_poll(0)
        self._live()

    @property
    def stale(self) -> bool:
        """True once the daemon said this epoch ended (reads the socket)."""
        if not self._ram:
            return True
        self._bus._memctx_poll(0)
        return not self._st.valid or self._st.epoch != self.epoch

    def read(self, va: int, n: int, cr3: int = 0) -> bytes:
        """``n`` bytes at guest-virtual ``va``, translated through ``cr3``
        (a page-table root; 0 = the guest kernel's). Raises
        GuestMemoryError naming the first address that is not readable."""
        st = self._st
        now = _now()
        if st.epoch != self.epoch or not st.valid or now >= self._bus._memctx_due:
            self._live()
        if not cr3 and (va & 0xFFF) + n <= 4096 and self._fd >= 0:  # within one page
            e = self._pages.get(va >> 12)
            if e is None or now - e[1] >= _TTL_NS:
                e = self._page(va, now)
            if e is not None:
                b = _pread(self._fd, n, e[0] + (va & 0xFFF))
                if len(b) == n:
                    return b
        if n <= _SCRATCH and not cr3:  # no allocation but the result
            self._va.value = va
            self._n.value = n
            r = self._read_virt(self._as_p, self._va, self._scratch_p, self._n, self._done_p)
            if r:
                raise _fail(r, f"cannot read {n} bytes at 0x{va:x} of '{self.vm.name}'", va + self._done.value)
            return self._mv[:n].tobytes()
        buf = ctypes.create_string_buffer(n)
        done = ctypes.c_size_t(0)
        r = self._L.vmie_read_virt(self._asp(cr3), va, buf, n, ctypes.byref(done))
        if r < 0:
            raise _fail(r, f"cannot read {n} bytes at 0x{va:x} of '{self.vm.name}'", va + done.value)
        return buf.raw

    def read_phys(self, pa: int, n: int) -> bytes:
        """``n`` bytes at guest-physical ``pa`` (a hole is an error, never zeros)."""
        self._ok()
        buf = ctypes.create_string_buffer(n)
        r = self._L.vmie_ram_read(self._ram, pa, buf, n)
        if r < 0:
            raise _fail(r, f"cannot read {n} physical bytes of '{self.vm.name}'", pa)
        return buf.raw

    def read_str(self, va: int, max_len: int = 4096, cr3: int = 0, encoding: str = "utf-8") -> str:
        """The NUL-terminated string at ``va`` (at most ``max_len`` - 1 bytes;
        ValueError if it is longer), decoded with ``encoding``."""
        self._ok()
        buf = ctypes.create_string_buffer(max_len)
        got = ctypes.c_size_t(0)
        r = self._L.vmie_read_str(self._asp(cr3), va, buf, max_len, ctypes.byref(got))
        if r == -errno.E2BIG:
            raise ValueError(f"no NUL within {max_len - 1} bytes at 0x{va:x}")
        if r < 0:
            raise _fail(r, f"cannot read a string at 0x{va:x} of '{self.vm.name}'", va + got.value)
        return buf.raw[:got.value].decode(encoding, "replace")

    def read_struct(self, va: int, cls: Type[S], cr3: int = 0) -> S:
        """A ctypes Structure (or Union / array type) read from ``va``:
        ``mem.read_struct(va, MyStruct)``. Set ``_pack_`` and little-endian
        fields to match the guest's layout."""
        return cls.from_buffer_copy(self.read(va, ctypes.sizeof(cls), cr3))

    def read_u64(self, va: int, cr3: int = 0) -> int:
        """A little-endian u64 at ``va``."""
        return int.from_bytes(self.read(va, 8, cr3), "little")

    def read_u32(self, va: int, cr3: int = 0) -> int:
        """A little-endian u32 at ``va``."""
        return int.from_bytes(self.read(va, 4, cr3), "little")

    def translate(self, va: int, cr3: int = 0) -> Translation:
        """The translation of ``va`` (cached for up to 1 s, as libvmie does)."""
        self._ok()
        x = _vmie.Xlate()
        r = self._L.vmie_translate(self._asp(cr3), va, ctypes.byref(x))
        if r < 0:
            raise _fail(r, f"cannot translate 0x{va:x} of '{self.vm.name}'", va)
        return Translation(va, x.gpa, x.page_size, bool(x.writable), bool(x.user), bool(x.nx))

    def flush(self) -> None:
        """Forget cached translations (e.g. right after writing page tables)."""
        self._ok()
        self._pages.clear()
        self._L.vmie_tlb_flush(self._tlb)

    def write(self, va: int, data: bytes, cr3: int = 0, phys: bool = False) -> int:
        """Write ``data`` at guest-virtual ``va`` (through ``cr3``, 0 = the
        kernel's root) or guest-physical with ``phys=True``, as CMD_MEMWRITE
        under the memwrite lease (taken for this call if you do not hold
        it). All or nothing: the daemon checks the whole extent first.
        Returns the number of bytes written.

        On a protocol-version-2 connection (``bus.version``) a write of
        64 KiB or more is copied into the connection's sealed staging memfd
        and passed to the daemon as an fd, not through the socket; smaller
        ones travel inline or as a tail."""
        self.check()
        n = self.vm._memwrite(va, bytes(data), cr3, phys).value
        self.flush()
        return n

    def write_fd(self, va: int, fd: Union[int, HasFileno], length: int, offset: int = 0, cr3: int = 0,
                 phys: bool = False) -> int:
        """Write ``length`` bytes read from ``fd`` at ``offset`` to ``va``
        (as :meth:`write`): the daemon copies them from the file into guest
        RAM itself (protocol version 2, docs/protocol.md §7.2). ``fd``: an
        int or an object with ``fileno()``, a memfd or a /dev/shm file open
        for reading; seal a memfd with ``F_SEAL_SHRINK`` (the daemon then
        maps it, from 64 KiB up) and do not change the bytes until this
        returns. ``length``: 1..``bus.tail_max``. Raises TypeError /
        ValueError naming the bad argument (before anything is sent),
        VmsigError ``-EOPNOTSUPP`` on a version-1 connection, CommandError
        ``-ENODATA`` when the file ends before ``offset + length``.
        Returns the number of bytes written."""
        self.check()
        n = self.vm._memwrite_fd(va, fd, length, offset, cr3, phys).value
        self.flush()
        return n

    def load_symbols(self, symbols: Union[str, "os.PathLike[str]", Symbols]) -> Symbols:
        """Use ``symbols`` (a path to the guest kernel's System.map or a copy
        of its /proc/kallsyms, or a :class:`vmsig.Symbols` already loaded)
        for :meth:`symbol` and :meth:`read_sym`. The file is checked whole:
        SymbolFileError names the file and line of any fault. Returns the
        Symbols (keep it for the next epoch's Memory)."""
        syms = symbols if isinstance(symbols, Symbols) else Symbols.load(os.fspath(symbols))
        self.symbols = syms
        return syms

    def symbol(self, spec: str, symbols: Optional[Symbols] = None) -> int:
        """The running guest kernel's address of ``spec``: ``"NAME"`` or
        ``"NAME+OFF"`` (OFF decimal or 0x-hex), looked up in ``symbols``
        (default: those of :meth:`load_symbols`) and moved by the KASLR
        slide, ``kernel_base - map _text``.

        Raises UnknownSymbol / AmbiguousSymbol for the name, KernelBaseUnknown
        if the daemon gave no kernel base, SymbolError for a bad spec or no
        symbols, StaleContextError if this epoch ended."""
        self._ok()
        syms = symbols if symbols is not None else self.symbols
        if syms is None:
            name = split_spec(spec)[0]
            raise SymbolError(f"no symbols for '{name}': call mem.load_symbols(System.map) or pass symbols=",
                              name=name)
        if not self.kernel_base:
            name = split_spec(spec)[0]
            syms.address(name)  # a bad name is the first thing to tell
            raise KernelBaseUnknown(
                f"'{self.vm.name}' reports no kernel base (vmsigd too old, or the kernel image was not found): "
                f"cannot apply the KASLR slide to '{name}'", name, syms.path)
        return syms.resolve(spec, self.kernel_base)

    def read_sym(self, spec: str, n: int, symbols: Optional[Symbols] = None) -> bytes:
        """``n`` bytes at kernel symbol ``spec`` (``"NAME"`` or ``"NAME+OFF"``,
        see :meth:`symbol`): ``mem.read(mem.symbol(spec), n)``."""
        return self.read(self.symbol(spec, symbols), n)

    def read_sym_str(self, spec: str, max_len: int = 4096, symbols: Optional[Symbols] = None) -> str:
        """The NUL-terminated string at kernel symbol ``spec``, as :meth:`read_str`."""
        return self.read_str(self.symbol(spec, symbols), max_len)

    def close(self) -> None:
        """Release the RAM mapping and the translation cache."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._ram:
            # every call now takes the full check, which says "closed"
            self._st = _CLOSED
            self._L.vmie_tlb_free(self._tlb)
            self._L.vmie_ram_free(self._ram)
            self._ram = ctypes.c_void_p()
            self._tlb = ctypes.c_void_p()

    def __enter__(self) -> "Memory":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return (f"<vmsig.Memory vm={self.vm.name!r} epoch={self.epoch} root=0x{self.kernel_root:x} "
                f"os={self.os} paging={self.paging}"
                f"{f' kernel_base=0x{self.kernel_base:x}' if self.kernel_base else ''}"
                f"{' stale' if self.stale else ''}>")

