"""The kernel's string parsers (lib/kstrtox.c, lib/kstrtox.c:kstrtobool).

Store functions parse user input exactly as the kernel does, so a junk
write fails with the same errno: EINVAL for malformed text, ERANGE for a
number that does not fit.
"""

from __future__ import annotations

import errno

from fakesys.errors import Errno


def kstrtoull(s: str, base: int = 0, bits: int = 64) -> int:
    """Unsigned integer; optional '+', one trailing newline, no other text."""
    if s.endswith("\n"):
        s = s[:-1]
    if s.startswith("+"):
        s = s[1:]
    if base == 0:
        if s[:2].lower() == "0x" and len(s) > 2:
            base, s = 16, s[2:]
        elif s.startswith("0") and len(s) > 1:
            base, s = 8, s[1:]
        else:
            base = 10
    elif base == 16 and s[:2].lower() == "0x":
        s = s[2:]
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"[:base]
    if not s or any(c not in digits for c in s.lower()):
        raise Errno(errno.EINVAL, f"not a base-{base} number")
    value = int(s, base)
    if value >> bits:
        raise Errno(errno.ERANGE, "number too large")
    return value


kstrtoul = kstrtoull


def kstrtoint(s: str, base: int = 0) -> int:
    """Signed 32-bit integer."""
    neg = s.startswith("-")
    value = kstrtoull(s[1:] if neg else s, base)
    value = -value if neg else value
    if not -(1 << 31) <= value < (1 << 31):
        raise Errno(errno.ERANGE, "number too large")
    return value


# isspace() of lib/ctype.c: the C whitespace and Latin-1 NBSP (0xA0), which
# a store sees as the surrogate of byte 0xA0 (parse_store decodes with
# surrogateescape)
_KSPACE = " \t\n\x0b\x0c\r\udca0"


def strim(s: str) -> str:
    """strim(): leading and trailing isspace() characters removed, as the
    kernel's (Python's str.strip() also removes other Unicode spaces)."""
    return s.strip(_KSPACE)


def kstrtobool(s: str) -> bool:
    """y/Y/t/T/1 and n/N/f/F/0 by first character, on/off by the first two."""
    c = s[:1]
    if c in ("y", "Y", "t", "T", "1"):
        return True
    if c in ("n", "N", "f", "F", "0"):
        return False
    if c in ("o", "O"):
        if s[1:2] in ("n", "N"):
            return True
        if s[1:2] in ("f", "F"):
            return False
    raise Errno(errno.EINVAL, "not a boolean")


class StoreBuf(str):
    """The text a store sees, with ``count``: the byte count of the write."""

    count: int


def parse_store(data: bytes) -> StoreBuf:
    """What a C store sees: the buffer up to the first NUL (and the count)."""
    buf = StoreBuf(data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape"))
    buf.count = len(data)
    return buf


def strip_newline(buf: str) -> str:
    """sysfs_streq() semantics: one trailing newline does not count."""
    return buf[:-1] if buf.endswith("\n") else buf
