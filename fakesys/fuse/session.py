"""What libfuse can do for the server that pyfuse3 has no switch for.

A warm ``ndctl list -BDRNu -vvv`` made 789 requests, each a round trip
through pyfuse3's handler coroutines.  Here:

* ``FUSE_CAP_CACHE_SYMLINKS``: the kernel keeps symlink targets in its
  page cache, as it keeps attribute contents, instead of sending a
  READLINK at every resolution (87 requests).  pyfuse3 never asks for it.
* ``cache_readdir`` on every opendir: the kernel keeps listings (the
  READDIRPLUS requests, and the attributes the server built for each
  entry).  pyfuse3's ``FileInfo`` has no field for it.
* OPEN of an attribute the kernel caches is answered straight from the
  callback, and RELEASE of an inode the server holds no state for is
  answered without a handler: those are 611 requests, and pyfuse3 runs a
  coroutine for each.  An open+read+close of an attribute took 50 µs and
  takes 28 (measured).  So are OPENDIR and a READ through such a handle
  (the first read of an attribute, or one whose show fails, which the
  kernel never caches); RELEASEDIR has nothing to release at all, and
  libfuse answers it itself when the table has no entry for it.  With the
  front (front.py), which answers these before libfuse sees them, the
  callbacks get only what the front leaves (a first READ, an entry not
  published yet); without it they answer them all.

libfuse calls the filesystem through the operations table it copied from
pyfuse3 into its session.  ``tune()`` finds pyfuse3's two module variables
(the session and the table's template) in the symbol table of pyfuse3's
extension module, finds the copy in the session by its content, and
points its entries at the functions below, which call pyfuse3's own
wherever they do not answer themselves.  What it relies on is libfuse's
ABI, fixed since 3.0: the order of ``struct fuse_lowlevel_ops``, the head
of ``struct fuse_conn_info`` and the layout of ``struct fuse_file_info``.
Whatever it cannot find or verify leaves the session as pyfuse3 made it
(and logs why): the mount works the same, with more requests.

Call between ``pyfuse3.init()`` and ``pyfuse3.main()``: INIT is answered
in ``main()``.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import struct
from fakesys.errors import Errno

log = logging.getLogger("fakesys.fuse")

FUSE_CAP_CACHE_SYMLINKS = 1 << 23           # fuse_common.h
_CONN_CAPABLE, _CONN_WANT = 20, 24          # offsets in struct fuse_conn_info
_FI_FLAGS, _FI_BITS, _FI_FH = 0, 4, 16      # offsets in struct fuse_file_info
_FI_KEEP_CACHE, _FI_CACHE_READDIR = 1 << 2, 1 << 6   # in its bit field
# indexes in struct fuse_lowlevel_ops (fuse_lowlevel.h); the first 23
# (init .. releasedir) identify pyfuse3's table
_INIT, _OPEN, _READ, _RELEASE, _OPENDIR, _RELEASEDIR, _KNOWN = 0, 14, 15, 18, 20, 22, 23

_c = ctypes
# libfuse calls these: the argument types of init() and of open(),
# release() and opendir(); and pyfuse3's own, which run Python: with the GIL
_CONN_OP = _c.CFUNCTYPE(None, _c.c_void_p, _c.c_void_p)
_FILE_OP = _c.CFUNCTYPE(None, _c.c_void_p, _c.c_uint64, _c.c_void_p)
_PY_CONN_OP = _c.PYFUNCTYPE(None, _c.c_void_p, _c.c_void_p)
_PY_FILE_OP = _c.PYFUNCTYPE(None, _c.c_void_p, _c.c_uint64, _c.c_void_p)
_READ_OP = _c.CFUNCTYPE(None, _c.c_void_p, _c.c_uint64, _c.c_size_t, _c.c_int64, _c.c_void_p)
_PY_READ_OP = _c.PYFUNCTYPE(None, _c.c_void_p, _c.c_uint64, _c.c_size_t, _c.c_int64, _c.c_void_p)

_installed: list[object] = []  # the callbacks must outlive the session


def tune(pyfuse3, server) -> bool:
    """Install the operations; ``server`` answers what they ask.

    ``server.cached_open(ino, flags)`` gives the file handle of an open to
    answer here (with keep_cache), or None to leave it to pyfuse3;
    ``server.cached_read(fh, off, size)`` the bytes of a READ to answer
    here, or None (and raises Errno for an error reply);
    ``server.cached_opendir(ino)`` likewise the handle of a directory;
    ``server.stateless(ino)`` says a RELEASE of ``ino`` needs no handler.
    """
    try:
        ops = _session_ops(pyfuse3.__file__)
        libfuse = _c.PyDLL("libfuse3.so.3")
    except (OSError, LookupError, ValueError) as e:
        log.info("FUSE session left as pyfuse3 made it: %s", e)
        return False
    reply_err, reply_open = libfuse.fuse_reply_err, libfuse.fuse_reply_open
    reply_buf = libfuse.fuse_reply_buf
    reply_err.argtypes = [_c.c_void_p, _c.c_int]
    reply_open.argtypes = [_c.c_void_p, _c.c_void_p]
    reply_buf.argtypes = [_c.c_void_p, _c.c_char_p, _c.c_size_t]
    pyfuse3_init = _PY_CONN_OP(ops[_INIT])
    pyfuse3_open = _PY_FILE_OP(ops[_OPEN])
    pyfuse3_read = _PY_READ_OP(ops[_READ])
    pyfuse3_release = _PY_FILE_OP(ops[_RELEASE])
    pyfuse3_opendir = _PY_FILE_OP(ops[_OPENDIR])

    def answer_open(req: int, fi: int, fh: int, bits: int) -> None:
        _c.c_uint64.from_address(fi + _FI_FH).value = fh
        _c.c_uint.from_address(fi + _FI_BITS).value |= bits
        reply_open(req, fi)

    def failed(req: int, what: str, ino: int) -> None:
        # a request must always get its answer (the server's handlers
        # answer EIO for a fault in the same way)
        log.exception("FUSE %s failed (inode %d)", what, ino)
        reply_err(req, errno.EIO)

    def init(userdata: int, conn: int) -> None:
        pyfuse3_init(userdata, conn)
        if _c.c_uint.from_address(conn + _CONN_CAPABLE).value & FUSE_CAP_CACHE_SYMLINKS:
            _c.c_uint.from_address(conn + _CONN_WANT).value |= FUSE_CAP_CACHE_SYMLINKS

    def open_(req: int, ino: int, fi: int) -> None:
        try:
            fh = server.cached_open(ino, _c.c_int.from_address(fi + _FI_FLAGS).value)
        except Exception:
            return failed(req, "open", ino)
        if fh is None:
            pyfuse3_open(req, ino, fi)
        else:
            answer_open(req, fi, fh, _FI_KEEP_CACHE)

    def read(req: int, ino: int, size: int, off: int, fi: int) -> None:
        try:
            data = server.cached_read(_c.c_uint64.from_address(fi + _FI_FH).value, off, size)
        except Errno as e:
            reply_err(req, e.errno)
            return
        except Exception:
            return failed(req, "read", ino)
        if data is None:
            pyfuse3_read(req, ino, size, off, fi)
        else:
            reply_buf(req, data, len(data))

    def release(req: int, ino: int, fi: int) -> None:
        try:
            done = server.stateless(ino)
        except Exception:
            log.exception("FUSE release failed (inode %d)", ino)
            done = False
        if done:
            reply_err(req, 0)
        else:
            pyfuse3_release(req, ino, fi)

    def opendir(req: int, ino: int, fi: int) -> None:
        try:
            fh = server.cached_opendir(ino)
        except Exception:
            return failed(req, "opendir", ino)
        if fh is None:
            pyfuse3_opendir(req, ino, fi)  # its answer: ENOTDIR, ENOENT
        else:
            # keep_cache too: newer kernels drop the listing at an opendir without
            answer_open(req, fi, fh, _FI_KEEP_CACHE | _FI_CACHE_READDIR)

    callbacks = {_INIT: _CONN_OP(init), _OPEN: _FILE_OP(open_), _READ: _READ_OP(read),
                 _RELEASE: _FILE_OP(release), _OPENDIR: _FILE_OP(opendir)}
    _installed[:] = callbacks.values()
    for index, callback in callbacks.items():
        ops[index] = _c.cast(callback, _c.c_void_p).value
    ops[_RELEASEDIR] = None  # libfuse answers it: a directory handle holds nothing
    return True


_SESSION_VAR, _OPS_VAR = "__pyx_v_7pyfuse3_session", "__pyx_v_7pyfuse3_fuse_ops"


def session_pointer(module_path: str) -> int:
    """pyfuse3's ``struct fuse_session *`` (raises LookupError, ValueError)."""
    return _pointers(module_path)[0]


def _pointers(module_path: str) -> tuple[int, int]:
    """Addresses of pyfuse3's session and of its operations table's template."""
    symbols = _static_symbols(module_path, (_SESSION_VAR, _OPS_VAR))
    base = _load_base(module_path)
    session = _c.c_void_p.from_address(base + symbols[_SESSION_VAR]).value
    if not session:
        raise ValueError("pyfuse3 has no session")
    return session, base + symbols[_OPS_VAR]


def _session_ops(module_path: str) -> ctypes.Array:
    """libfuse's copy of pyfuse3's operations table, in its session."""
    session, ops = _pointers(module_path)
    template = _c.string_at(ops, _KNOWN * 8)
    pointers = struct.unpack(f"<{_KNOWN}Q", template)
    if not all(pointers[i] for i in (_INIT, _OPEN, _READ, _RELEASE, _OPENDIR)):
        raise ValueError("pyfuse3's operations table lacks an operation replaced here")
    # struct fuse_session: a few fields, then the table
    head = _c.string_at(session, 512)
    offset = head.find(template)
    if offset < 0 or offset % 8 or head.find(template, offset + 1) >= 0:
        raise ValueError("pyfuse3's operations table is not in its session")
    return (_c.c_void_p * _KNOWN).from_address(session + offset)


def _load_base(path: str) -> int:
    """Where the shared object ``path`` is mapped in this process."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(None, 5)
            if len(fields) == 6 and fields[5].strip() == path and int(fields[2], 16) == 0:
                return int(fields[0].split("-")[0], 16)
    raise LookupError(f"{path} is not mapped")


def _static_symbols(path: str, names: tuple[str, ...]) -> dict[str, int]:
    """Values of local symbols in an ELF64 object's .symtab (Cython's module
    variables are static, so they are only there)."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data[:5] != b"\x7fELF\x02" or data[5] != 1:
            raise ValueError(f"{path} is not a little-endian ELF64 object")
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", data, 0x3a)
        # (sh_type, sh_offset, sh_size, sh_link) of each section
        sections = [struct.unpack_from("<4xI16xQQI", data, shoff + i * shentsize)
                    for i in range(shnum)]
        found: dict[str, int] = {}
        for kind, offset, size, link in sections:
            if kind != 2:  # SHT_SYMTAB
                continue
            _, strings_at, strings_size, _ = sections[link]
            strings = data[strings_at:strings_at + strings_size]
            for name in names:
                at = strings.find(b"\0" + name.encode() + b"\0")
                if at < 0:
                    continue
                # the 24-byte Elf64_Sym whose st_name is that string; st_value at +8
                key, pos = struct.pack("<I", at + 1), offset
                while (pos := data.find(key, pos, offset + size)) >= 0:
                    if (pos - offset) % 24 == 0:
                        found[name] = struct.unpack_from("<Q", data, pos + 8)[0]
                        break
                    pos += 1
    missing = sorted(set(names) - set(found))
    if missing:
        raise LookupError(f"no symbol {', '.join(missing)} in {path} (stripped?)")
    return found
