"""Dump sysfs trees in the oracle's golden format, parse such dumps, diff them.

A Python twin of the oracle's guest tools (``oracle/guest/sysdump.c`` and
``sysdump-all``).  One line per entry, tab separated::

    PATH  TYPE  MODE  SIZE  DATA

``TYPE`` is ``d``/``f``/``l``/``o`` from ``lstat`` (``?`` when it failed),
``MODE`` the permission bits as 4 octal digits, ``SIZE`` ``st_size``.
``DATA`` is ``->TARGET`` for links (never followed), ``=CONTENT`` for files
(first 4096 bytes, ``\\n`` ``\\t`` ``\\\\`` and ``\\xNN`` escapes, then
``\\<TRUNC>`` if there was more), or ``!ERRNAME strerror (open|read)`` when
the file cannot be read.  Entries are sorted by name within a directory.

Run it inside a fake, where /sys is the fake's::

    fakesys run --name x -- python -m fakesys.sysdump [-d DEPTH] PATH...
    fakesys run --name x -- python -m fakesys.sysdump --all     # = sysdump-all

:func:`compare` diffs two parsed dumps; the only normalisation is that
every (lower-case) uuid other than the nil uuid is replaced by a placeholder (the nil
uuid is not random, so it is kept literally).
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import glob
import os
import re
import stat as S
import sys
from dataclasses import dataclass, field
from typing import IO, Iterable

MAXREAD = 4096
DEFAULT_DEPTH = 64

# ---------------------------------------------------------------- dumping

_libc = ctypes.CDLL(None, use_errno=True)
try:
    _strerrorname = _libc.strerrorname_np
    _strerrorname.restype = ctypes.c_char_p
    _strerrorname.argtypes = [ctypes.c_int]
except AttributeError:  # glibc < 2.32
    _strerrorname = None

# Python's errno table names some aliases differently from glibc.
_ERRNAME_FIX = {errno.EAGAIN: "EAGAIN", errno.EDEADLK: "EDEADLK", errno.EOPNOTSUPP: "EOPNOTSUPP"}


def errname(err: int) -> str:
    """The errno name exactly as glibc's ``strerrorname_np`` gives it."""
    if _strerrorname is not None:
        name = _strerrorname(err)
        return name.decode() if name else "E?"
    return _ERRNAME_FIX.get(err) or errno.errorcode.get(err, "E?")


def _err(err: int, what: str) -> bytes:
    return f"!{errname(err)} {os.strerror(err)} ({what})".encode()


def escape(data: bytes) -> bytes:
    out = bytearray()
    for c in data:
        if c == 0x0A:
            out += b"\\n"
        elif c == 0x09:
            out += b"\\t"
        elif c == 0x5C:
            out += b"\\\\"
        elif c < 0x20 or c >= 0x7F:
            out += b"\\x%02x" % c
        else:
            out.append(c)
    return bytes(out)


def _file_data(path: bytes) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError as e:
        return _err(e.errno, "open")
    buf = b""
    try:
        while len(buf) < MAXREAD + 1:
            try:
                chunk = os.read(fd, MAXREAD + 1 - len(buf))
            except InterruptedError:
                continue
            except OSError as e:
                # sysdump.c prints what it got, then "\<" and the error
                head = b"=" + escape(buf[:MAXREAD]) + b"\\<" if buf else b""
                return head + _err(e.errno, "read")
            if not chunk:
                break
            buf += chunk
    finally:
        os.close(fd)
    out = b"=" + escape(buf[:MAXREAD])
    if len(buf) > MAXREAD:
        out += b"\\<TRUNC>"
    return out


def walk(path: str | bytes, maxdepth: int = DEFAULT_DEPTH, depth: int = 0) -> Iterable[bytes]:
    """Yield the dump lines (without newline) of ``path`` and, for a
    directory, of everything below it down to ``maxdepth``."""
    p = os.fsencode(path)
    try:
        st = os.lstat(p)
    except OSError as e:
        yield p + b"\t?\t-\t-\t" + _err(e.errno, "lstat")
        return
    t = (b"d" if S.S_ISDIR(st.st_mode) else b"f" if S.S_ISREG(st.st_mode)
         else b"l" if S.S_ISLNK(st.st_mode) else b"o")
    line = p + b"\t" + t + b"\t" + b"%04o" % (st.st_mode & 0o7777) + b"\t" + b"%d" % st.st_size + b"\t"
    if t == b"l":
        try:
            line += b"->" + escape(os.readlink(p))
        except OSError as e:
            line += _err(e.errno, "readlink")
    elif t == b"f":
        line += _file_data(p)
    yield line
    if t != b"d" or depth >= maxdepth:
        return
    try:
        names = sorted(os.listdir(p))
    except OSError as e:
        yield p + b"\t!\t-\t-\t" + _err(e.errno, "scandir")
        return
    sep = b"" if p.endswith(b"/") else b"/"
    for name in names:
        yield from walk(p + sep + name, maxdepth, depth + 1)


def dump(paths: Iterable[str | bytes], out: IO[bytes], maxdepth: int = DEFAULT_DEPTH) -> None:
    for path in paths:
        for line in walk(path, maxdepth):
            out.write(line + b"\n")


def _exists(path: str) -> bool:
    return os.path.exists(path)   # like sh's [ -e ]: follows links


def _sorted_glob(pattern: str) -> list[str]:
    # sh globbing in the C locale: byte order
    return sorted(glob.glob(pattern), key=os.fsencode)


def plan_all(sys_root: str = "/sys") -> list[tuple[str, int]]:
    """The (path, maxdepth) list that ``sysdump-all`` dumps, in its order."""
    s = sys_root.rstrip("/")
    env = os.environ
    cxl = any(_exists(p) for p in _sorted_glob(f"{s}/bus/cxl/devices/*"))
    trees = [f"{s}/bus/nd", f"{s}/bus/dax", f"{s}/class/nd", f"{s}/class/dax"]
    for link in _sorted_glob(f"{s}/bus/nd/devices/ndbus*"):
        if _exists(link):
            trees.append(os.path.dirname(os.path.realpath(link)))
    for link in _sorted_glob(f"{s}/bus/dax/devices/*"):
        if _exists(link):
            trees.append(os.path.realpath(link))
    for link in _sorted_glob(f"{s}/devices/platform/hmem*") + [f"{s}/devices/platform/e820_pmem"]:
        if _exists(link):
            trees.append(link)
    for link in _sorted_glob(f"{s}/bus/acpi/devices/ACPI0012:*"):
        if _exists(link):
            trees.append(os.path.realpath(link))
    trees.append(f"{s}/devices/system/memory")
    if cxl:
        trees.append(f"{s}/bus/cxl")
        for link in _sorted_glob(f"{s}/bus/cxl/devices/*"):
            if _exists(link):
                trees.append(os.path.realpath(link))
    trees += env.get("SYSDUMP_EXTRA", "").split()
    # sort -u, then drop paths inside another listed path
    kept: list[str] = []
    for t in sorted(set(trees), key=os.fsencode):
        if not any(t.startswith(k + "/") for k in kept):
            kept.append(t)
    plan = [(t, DEFAULT_DEPTH) for t in kept]

    plan.append((f"{s}/devices/system/node", int(env.get("SYSDUMP_NODE_DEPTH") or 2)))
    for d in ("bus/acpi/drivers/nfit", "bus/platform/drivers/e820_pmem",
              "bus/platform/drivers/hmem", "bus/virtio/drivers/virtio_pmem"):
        if _exists(f"{s}/{d}"):
            plan.append((f"{s}/{d}", 1))
    if cxl:
        for link in _sorted_glob(f"{s}/bus/cxl/devices/mem*"):
            if _exists(link):
                plan.append((os.path.dirname(os.path.realpath(link)), 1))
    mods = "libnvdimm nfit nd_pmem nd_btt nd_e820 dax dax_pmem device_dax kmem dax_hmem virtio_pmem nd_virtio"
    if cxl:
        mods += " cxl_core cxl_acpi cxl_pci cxl_port cxl_mem cxl_pmem"
    for m in mods.split():
        for sub in ("parameters", "drivers"):
            if _exists(f"{s}/module/{m}/{sub}"):
                plan.append((f"{s}/module/{m}/{sub}", 1))
    pat = re.compile(r"ndbus|/dax[0-9]|pmem|hmem|/btt|/pfn")
    for g in ("dev/char/*", "dev/block/*", "block/*", "class/block/*"):
        for link in _sorted_glob(f"{s}/{g}"):
            try:
                target = os.readlink(link)
            except OSError:
                continue
            if pat.search(target):
                plan.append((link, 0))
    return plan


def dump_all(out: IO[bytes], sys_root: str = "/sys") -> None:
    """Everything ``sysdump-all`` puts into ``sysfs/TAG.txt``."""
    for path, depth in plan_all(sys_root):
        dump([path], out, depth)


# ---------------------------------------------------------------- parsing

@dataclass
class Entry:
    path: str
    type: str
    mode: str
    size: str
    data: str
    listerr: str | None = None   # a "!" (scandir failed) line for this directory


@dataclass
class Dump:
    entries: dict[str, Entry] = field(default_factory=dict)

    def __contains__(self, path: str) -> bool:
        return path in self.entries

    def __getitem__(self, path: str) -> Entry:
        return self.entries[path]

    def __len__(self) -> int:
        return len(self.entries)

    def children(self, path: str) -> set[str]:
        return {p for p in self.entries if os.path.dirname(p) == path and p != path}

    def roots(self) -> list[str]:
        """Entries whose parent directory is not in the dump (the dumped roots)."""
        return [p for p in self.entries if os.path.dirname(p) not in self.entries or p == "/"]


def parse(text: str | bytes) -> Dump:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    d = Dump()
    for line in text.split("\n"):
        if not line:
            continue
        parts = line.split("\t", 4)
        if len(parts) != 5:
            raise ValueError(f"not a sysdump line: {line!r}")
        path, typ, mode, size, data = parts
        if typ == "!":
            if path in d.entries:
                d.entries[path].listerr = data
            continue
        d.entries.setdefault(path, Entry(path, typ, mode, size, data))
    return d


def load(path: str) -> Dump:
    with open(path, "rb") as f:
        return parse(f.read())


# ---------------------------------------------------------------- comparing

# lower case, as the kernel prints them (an upper-case uuid stays a difference)
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
NIL_UUID = "00000000-0000-0000-0000-000000000000"


def normalise(data: str) -> str:
    """Replace every non-nil uuid by ``<uuid>``; nothing else changes."""
    return UUID_RE.sub(lambda m: m.group(0) if m.group(0) == NIL_UUID else "<uuid>", data)


@dataclass
class Difference:
    path: str
    kind: str            # missing | extra | type | mode | data | listerr
    ours: str | None
    golden: str | None

    def __str__(self) -> str:
        if self.kind == "missing":
            return f"missing  {self.path}\n    golden: {self.golden}"
        if self.kind == "extra":
            return f"extra    {self.path}\n    ours:   {self.ours}"
        return f"{self.kind:<8} {self.path}\n    ours:   {self.ours}\n    golden: {self.golden}"


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _describe(e: Entry) -> str:
    return f"{e.type} {e.mode} {e.data}"


def compare(ours: Dump, golden: Dump, roots: Iterable[str] | None = None,
            exclude: Iterable[str] = ()) -> list[Difference]:
    """Differences between two dumps, restricted to paths under ``roots``
    (default: every path of either dump) and outside ``exclude``.

    Every golden entry must exist in ours with the same type, mode and data
    (link target, file content or error) after :func:`normalise`; every
    golden directory must have exactly the same children in ours, so any
    path we list under the roots that the golden does not is an extra.
    ``st_size`` is not compared.
    """
    exclude = list(exclude)
    roots = list(roots) if roots is not None else None

    def wanted(p: str) -> bool:
        return (roots is None or _under(p, roots)) and not _under(p, exclude)

    diffs: list[Difference] = []
    for path, g in golden.entries.items():
        if not wanted(path):
            continue
        o = ours.entries.get(path)
        if o is None:
            diffs.append(Difference(path, "missing", None, _describe(g)))
            continue
        if o.type != g.type:
            diffs.append(Difference(path, "type", _describe(o), _describe(g)))
            continue
        if o.mode != g.mode:
            diffs.append(Difference(path, "mode", o.mode, g.mode))
        if normalise(o.data) != normalise(g.data):
            diffs.append(Difference(path, "data", o.data, g.data))
        if o.listerr != g.listerr:
            diffs.append(Difference(path, "listerr", o.listerr, g.listerr))
    # children of golden directories and anything else under the roots
    for path, o in ours.entries.items():
        if wanted(path) and path not in golden.entries:
            diffs.append(Difference(path, "extra", _describe(o), None))
    return sorted(diffs, key=lambda d: d.path)


def report(diffs: list[Difference]) -> str:
    return "\n".join(str(d) for d in diffs)


# ---------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fakesys.sysdump", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-d", type=int, default=DEFAULT_DEPTH, metavar="MAXDEPTH")
    ap.add_argument("--all", action="store_true", help="dump what the oracle's sysdump-all dumps")
    ap.add_argument("paths", nargs="*")
    args = ap.parse_args(argv)
    out = sys.stdout.buffer
    if args.all:
        dump_all(out)
    dump(args.paths, out, args.d)
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
