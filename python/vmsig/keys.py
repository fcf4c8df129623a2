# SPDX-License-Identifier: MIT
"""Key names and US-layout characters to Linux key codes, as vmsigctl
(src/tools/keymap.c) maps them: ``"a"``, ``"KEY_A"``, ``"enter"``, ``"f5"``,
``"leftctrl"``, ``"ctrl"`` or a number (``"30"``)."""

from __future__ import annotations

from typing import Optional, Tuple

LEFTSHIFT = 42

_NAMES = {
    "esc": 1, "1": 2, "2": 3, "3": 4, "4": 5, "5": 6, "6": 7, "7": 8, "8": 9, "9": 10, "0": 11,
    "minus": 12, "equal": 13, "backspace": 14, "tab": 15, "q": 16, "w": 17, "e": 18, "r": 19,
    "t": 20, "y": 21, "u": 22, "i": 23, "o": 24, "p": 25, "leftbrace": 26, "rightbrace": 27,
    "enter": 28, "leftctrl": 29, "a": 30, "s": 31, "d": 32, "f": 33, "g": 34, "h": 35, "j": 36,
    "k": 37, "l": 38, "semicolon": 39, "apostrophe": 40, "grave": 41, "leftshift": 42,
    "backslash": 43, "z": 44, "x": 45, "c": 46, "v": 47, "b": 48, "n": 49, "m": 50, "comma": 51,
    "dot": 52, "slash": 53, "rightshift": 54, "leftalt": 56, "space": 57, "capslock": 58,
    "f1": 59, "f2": 60, "f3": 61, "f4": 62, "f5": 63, "f6": 64, "f7": 65, "f8": 66, "f9": 67,
    "f10": 68, "f11": 87, "f12": 88, "rightctrl": 97, "rightalt": 100, "home": 102, "up": 103,
    "pageup": 104, "left": 105, "right": 106, "end": 107, "down": 108, "pagedown": 109,
    "insert": 110, "delete": 111, "leftmeta": 125, "rightmeta": 126, "ctrl": 29, "shift": 42,
    "alt": 56, "meta": 125, "return": 28, "escape": 1,
    # Python-side aliases (not in vmsigctl): "del" as in ctrl+alt+del
    "del": 111,
}

_PLAIN = "1234567890-=qwertyuiop[]asdfghjkl;'`\\zxcvbnm,./"
_SHIFTED = '!@#$%^&*()_+QWERTYUIOP{}ASDFGHJKL:"~|ZXCVBNM<>?'
_CODES = (2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27,
          30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53)


def by_name(name: str) -> Optional[int]:
    """The key code of a key name, or None if unknown."""
    if not name:
        return None
    if name[0].isdigit() and len(name) > 1:
        try:
            v = int(name, 0)
        except ValueError:
            return None
        return v if 0 < v < 768 else None
    if name[:4].upper() == "KEY_":
        name = name[4:]
    return _NAMES.get(name.lower())


def by_char(ch: str) -> Optional[Tuple[int, bool]]:
    """(code, needs_shift) of one character on a US layout, or None."""
    if ch == " ":
        return 57, False
    if ch == "\n":
        return 28, False
    if ch == "\t":
        return 15, False
    if len(ch) != 1 or ch == "\0":
        return None
    i = _PLAIN.find(ch)
    if i >= 0:
        return _CODES[i], False
    i = _SHIFTED.find(ch)
    if i >= 0:
        return _CODES[i], True
    return None


def parse_combo(combo: str) -> Tuple[int, ...]:
    """``"ctrl+alt+del"`` -> key codes, pressed in order and released in
    reverse (vmsigctl ``input VM key ctrl alt delete``). Raises ValueError
    naming an unknown key."""
    parts = combo.split("+")
    if len(parts) > 16 or any(not p.strip() for p in parts):
        raise ValueError(f"bad key combination {combo!r}: 1..16 key names joined by '+'")
    codes = []
    for p in parts:
        c = by_name(p.strip())
        if c is None:
            raise ValueError(f"unknown key {p.strip()!r} (e.g. a, enter, f5, leftctrl, KEY_A, 30)")
        codes.append(c)
    return tuple(codes)
