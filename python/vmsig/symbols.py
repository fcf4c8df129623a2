# SPDX-License-Identifier: MIT
"""Kernel symbol files: System.map, or the text of /proc/kallsyms.

Both are ``ADDRESS TYPE NAME`` lines; kallsyms adds ``\\t[module]`` after a
module's symbols. The file is untrusted input and is checked whole, with the
rules of vmsigctl's parser (src/tools/symfile.c): any malformed line refuses
the file with ``PATH:LINE: why``, nothing is guessed. Module symbols are
never the kernel image's and are not resolved. A name defined at two
different addresses is ambiguous (aliases at one address are one symbol).

A map's addresses are those the kernel was linked at; the running kernel
sits at ``map address - map _text + kernel_base`` (the KASLR slide), which
:meth:`Symbols.resolve` (and ``Memory.symbol``) applies.
"""

from __future__ import annotations

import errno
import re
from typing import Dict, Iterator, Optional, Tuple

from .errors import AmbiguousSymbol, KernelBaseUnknown, SymbolError, SymbolFileError, UnknownSymbol

MAX_BYTES = 64 << 20  # a System.map is ~6 MB, kallsyms ~12 MB
NAME_MAX = 511  # KSYM_NAME_LEN - 1
LINE_MAX = 1024
_U64 = (1 << 64) - 1

# Name characters: what kallsyms can hold, no blanks, controls or brackets.
_NC = r"\x21-\x5a\x5c\x5e-\x7e"
# A well-formed line (the file is decoded as latin-1: one char per byte).
_LINE = re.compile(r"([0-9a-fA-F]{1,16})[ \t]([A-Za-z?\-])[ \t]([" + _NC + r"]{1,%d})"
                   r"(?:[ \t]+\[[" % NAME_MAX + _NC + r"]+\])?\r?")
_SPEC = re.compile(r"([" + _NC.replace(r"\x21-\x5a", r"\x21-\x2a\x2c-\x5a") + r"]{1,%d})"
                   r"(?:\+(?:0[xX]([0-9a-fA-F]+)|([0-9]+)))?" % NAME_MAX)
_HEX = frozenset("0123456789abcdefABCDEF")


def _name_char(c: str) -> bool:
    return " " < c < "\x7f" and c not in "[]"


def _line_error(p: str, label: str, lineno: int) -> str:
    """Why line ``p`` (its '\\r' dropped) is not well formed: the message of
    symfile.c's parse_line, for the first fault from the left."""
    n = len(p)
    i = 0
    while i < n and p[i] in _HEX:
        i += 1
        if i > 16:
            return f"{label}:{lineno}: address longer than 16 hex digits"
    if i == 0:
        return f"{label}:{lineno}: expected 'ADDRESS TYPE NAME', no hex address"
    if i >= n or p[i] not in " \t":
        return f"{label}:{lineno}: no blank after the address"
    i += 1
    if i >= n or not (p[i].isascii() and (p[i].isalpha() or p[i] in "?-")):
        return f"{label}:{lineno}: bad symbol type"
    i += 1
    if i >= n or p[i] not in " \t":
        return f"{label}:{lineno}: the symbol type must be one character"
    i += 1
    name = i
    while i < n and _name_char(p[i]):
        i += 1
    if i == name:
        return f"{label}:{lineno}: no symbol name"
    if i - name > NAME_MAX:
        return f"{label}:{lineno}: symbol name longer than {NAME_MAX} bytes"
    if i < n and p[i] not in " \t":
        return f"{label}:{lineno}: bad character 0x{ord(p[i]):02x} in the symbol name"
    if "The real System.map" in p:
        return (f"{label}:{lineno}: Debian's placeholder System.map: the real one is in the "
                "linux-image-VERSION-dbg package")
    return f"{label}:{lineno}: expected 'ADDRESS TYPE NAME' or 'ADDRESS TYPE NAME [MODULE]'"


def split_spec(spec: str) -> Tuple[str, int]:
    """``"NAME"`` or ``"NAME+OFF"`` (OFF decimal or 0x-hex) as (name, offset).
    Raises SymbolError for an empty or too long name, bad characters, or a
    bad or overflowing offset."""
    m = _SPEC.fullmatch(spec) if isinstance(spec, str) else None
    off = 0
    if m:
        off = int(m.group(2), 16) if m.group(2) else int(m.group(3) or "0")
    if not m or off > _U64:
        raise SymbolError(f"'{spec}' is not SYMBOL or SYMBOL+OFFSET", -errno.EINVAL, str(spec))
    return m.group(1), off


class Symbols:
    """The kernel-image symbols of one System.map or /proc/kallsyms text.

    ``Symbols.load(path)`` reads and checks a file, ``Symbols.parse(data,
    label)`` text already in hand. Errors are :class:`vmsig.SymbolFileError`
    naming the file and line. The file must define ``_text`` once: it is the
    link-time start of the kernel image, the reference of the KASLR slide.

    ``syms["linux_banner"]`` (or :meth:`address`) is a symbol's map address;
    :meth:`resolve` gives a running kernel's address from its base.
    """

    __slots__ = ("path", "text", "_addr", "_line", "_dups", "_modules", "count")

    def __init__(self, path: str, addr: Dict[str, int], line: Dict[str, int],
                 dups: Dict[str, Tuple[int, ...]], modules: frozenset, count: int) -> None:
        self.path = path
        self._addr = addr
        self._line = line
        self._dups = dups
        self._modules = modules
        self.count = count  # symbol lines, module symbols included
        # _text is the reference of the slide: a file without one is refused now, not at first use
        try:
            self.text = self.address("_text")
        except AmbiguousSymbol as e:
            raise SymbolFileError(f"{e.reason}: not one kernel's symbols", -errno.EINVAL, path, e.lines[1]) from None
        except UnknownSymbol:
            raise SymbolFileError(f"{path}: no symbol '_text' (where the kernel image starts, the reference of "
                                  "the KASLR slide): not a kernel's System.map or kallsyms", -errno.EINVAL,
                                  path) from None

    @classmethod
    def load(cls, path: str) -> "Symbols":
        """Read ``path`` (at most 64 MiB; /proc/kallsyms is read to its end)
        and :meth:`parse` it. SymbolFileError names the path on any fault."""
        path = str(path)
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_BYTES + 1)
        except OSError as e:
            code = -(e.errno or errno.EIO)
            raise SymbolFileError(f"{path}: {e.strerror or e}", code, path) from e
        return cls.parse(data, path)

    @classmethod
    def parse(cls, data: bytes, label: str = "(symbols)") -> "Symbols":
        """Check ``data`` whole and index its kernel-image symbols; ``label``
        names it in messages (e.g. its path)."""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogatepass")
        if len(data) > MAX_BYTES:
            raise SymbolFileError(f"{label}: larger than {MAX_BYTES >> 20} MiB: not a symbol file", -errno.EFBIG,
                                  label)
        addr: Dict[str, int] = {}
        line: Dict[str, int] = {}
        dups: Dict[str, Tuple[int, ...]] = {}
        modules: set = set()
        count = 0
        nonzero = False
        match = _LINE.fullmatch
        for lineno, p in enumerate(data.decode("latin-1").split("\n"), 1):
            if len(p) > LINE_MAX:
                raise SymbolFileError(f"{label}:{lineno}: line longer than {LINE_MAX} bytes", path=label,
                                      line=lineno)
            m = match(p)
            if m is None:
                if "\0" in p:
                    raise SymbolFileError(f"{label}:{lineno}: NUL byte: not a text file", path=label, line=lineno)
                if p.endswith("\r"):
                    p = p[:-1]
                if not p:
                    continue  # blank lines carry nothing
                raise SymbolFileError(_line_error(p, label, lineno), path=label, line=lineno)
            count += 1
            name = m.group(3)
            if m.end(3) != len(p) and p[m.end(3)] in " \t":
                modules.add(name)  # "[module]": never the kernel image's
                continue
            a = int(m.group(1), 16)
            if a:
                nonzero = True
            have = addr.get(name)
            if have is None:
                addr[name] = a
                line[name] = lineno
            elif have != a:
                dups[name] = dups.get(name, (line[name],)) + (lineno,)
        if not count:
            raise SymbolFileError(f"{label}: no symbols in it", path=label)
        if not nonzero:
            raise SymbolFileError(f"{label}: every address is 0 (a /proc/kallsyms read without privilege: read it "
                                  "as root)", path=label)
        return cls(label, addr, line, dups, frozenset(modules), count)

    def address(self, name: str) -> int:
        """The map (link-time) address of kernel-image symbol ``name``.
        UnknownSymbol if it is not there (or only a module's),
        AmbiguousSymbol if it has definitions at different addresses."""
        a = self._addr.get(name)
        if a is None:
            extra = " (only a module's symbol of that name: modules are not resolved)" \
                if name in self._modules else ""
            raise UnknownSymbol(f"{self.path}: no symbol '{name}'{extra}", name, self.path)
        d = self._dups.get(name)
        if d is not None:
            more = ", ..." if len(d) > 2 else ""
            raise AmbiguousSymbol(f"{self.path}: '{name}' is ambiguous: {len(d)} definitions at different "
                                  f"addresses (lines {d[0]} and {d[1]}{more})", name, self.path, d)
        return a

    def line(self, name: str) -> int:
        """The 1-based line that defines ``name`` (0 if none)."""
        return self._line.get(name, 0)

    def slide(self, kernel_base: Optional[int]) -> int:
        """The KASLR slide for a kernel loaded at ``kernel_base``: base - map
        ``_text`` (negative if the kernel sits below its link address).
        KernelBaseUnknown if the base is None or 0."""
        if not kernel_base:
            raise KernelBaseUnknown("no kernel base is known (vmsigd too old, or the kernel image was not "
                                    "found): cannot apply the KASLR slide", "", self.path)
        return kernel_base - self.text

    def resolve(self, spec: str, kernel_base: Optional[int]) -> int:
        """The running kernel's address of ``spec`` (``"NAME"`` or
        ``"NAME+OFF"``): map address + ``slide(kernel_base)`` + OFF."""
        name, off = split_spec(spec)
        a = self.address(name)
        if not kernel_base:
            raise KernelBaseUnknown(f"no kernel base is known (vmsigd too old, or the kernel image was not "
                                    f"found): cannot apply the KASLR slide to '{name}'", name, self.path)
        return (a - self.text + kernel_base + off) & _U64

    def __getitem__(self, name: str) -> int:
        return self.address(name)

    def __contains__(self, name: object) -> bool:
        return name in self._addr

    def __iter__(self) -> Iterator[str]:
        return iter(self._addr)

    def __len__(self) -> int:
        return len(self._addr)

    def __repr__(self) -> str:
        return f"<vmsig.Symbols {self.path!r} {len(self._addr)} symbols _text=0x{self.text:x}>"
