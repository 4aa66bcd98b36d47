"""The reader in front of pyfuse3 (front.c) and the table it answers from.

front.c reads /dev/fuse in a thread of its own and answers OPEN, RELEASE,
OPENDIR, RELEASEDIR and FORGET itself when the table says how, and READs
of an attribute whose content the server rendered last (``set_content()``:
the content the kernel may cache, so a changed attribute, read directly,
costs no Python either); everything else reaches pyfuse3 as before.  The
server keeps both exact: one 32-bit entry per inode (``publish()``) and
the content are written before the request that changed what they say has
completed, as every other cache the kernel keeps of the tree is
invalidated.  An answer from an entry an instant old is one to a request
that arrived an instant earlier: it races the change the same way.

Where the library was not built or libfuse lacks custom I/O (before 3.14),
``start()`` returns None and pyfuse3 reads the device itself (logged).
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import logging
import mmap
import os

from fakesys.fuse import session

log = logging.getLogger("fakesys.fuse")

# an entry's bits (front.c has the same)
OPEN = 1          # a read-only OPEN gets a stateless handle the kernel caches
RELEASE = 2       # no handle of the inode holds state: RELEASE does nothing
DIR = 4           # a directory: OPENDIR gets its inode as handle
DIRECT = 8        # a read-only OPEN gets a stateless direct_io handle
EVENT_SHIFT = 16  # bits 16..30: the attribute's notify count
INODES = 1 << 20  # entries; inodes above are left to pyfuse3
SPIN = 50e-6      # busy-poll this long for the next request (multi-CPU only)

# for measurements: "0" serves without the front; seconds of busy-polling
_ENV, _SPIN_ENV = "FAKESYS_FUSE_FRONT", "FAKESYS_FUSE_SPIN"


class Front:
    """A running front; ``stop()`` it before the session is destroyed."""

    def __init__(self, lib: ctypes.CDLL, handle: int, table: ctypes.Array) -> None:
        self._lib = lib
        self._handle = handle
        self._table = table
        self.wake_fd: int = lib.front_wake_fd(handle)

    def publish(self, ino: int, entry: int) -> None:
        """How the front answers for ``ino`` from now on (0: it does not)."""
        if ino < INODES:
            self._table[ino] = entry

    def set_content(self, ino: int, content: bytes | int | None) -> None:
        """What a READ of ``ino`` through a handle without state answers from
        now on: the bytes, an errno, or (None) nothing: the server does."""
        if not self._handle or ino >= INODES:
            return
        if isinstance(content, bytes):
            self._lib.front_set_content(self._handle, ino, content, len(content), 0)
        else:
            self._lib.front_set_content(self._handle, ino, None, 0, content or 0)

    def ended(self) -> bool:
        """The reader has stopped reading (unmounted, or stop())."""
        return not self._handle or bool(self._lib.front_ended(self._handle))

    def counts(self) -> tuple[int, int]:
        """Requests answered by the front and handed to pyfuse3 so far."""
        if not self._handle:
            return 0, 0
        answered, queued = ctypes.c_ulong(), ctypes.c_ulong()
        self._lib.front_counts(self._handle, ctypes.byref(answered), ctypes.byref(queued))
        return answered.value, queued.value

    def stop(self) -> None:
        """Join the thread (the table stays, unread, while this object lives)."""
        if self._handle:
            handle, self._handle = self._handle, 0
            self._lib.front_stop(handle)


def library_path() -> str | None:
    """The built front.c (setup.py), or None."""
    here = os.path.dirname(os.path.abspath(__file__))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(here, "_front" + suffix)
        if os.path.exists(path):
            return path
    return None


def start(pyfuse3) -> Front | None:
    """Put a front before pyfuse3's session (after init(), before main())."""
    if os.environ.get(_ENV) == "0":
        return None
    path = library_path()
    if path is None:
        log.info("FUSE served without a front: front.c was not built (setup.py)")
        return None
    try:
        pointer = session.session_pointer(pyfuse3.__file__)
        lib = ctypes.CDLL(path, use_errno=True)
    except (OSError, LookupError, ValueError) as e:
        log.info("FUSE served without a front: %s", e)
        return None
    lib.front_start.restype = ctypes.c_void_p
    lib.front_start.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64,
                                ctypes.c_long]
    lib.front_wake_fd.argtypes = lib.front_ended.argtypes = [ctypes.c_void_p]
    lib.front_counts.argtypes = [ctypes.c_void_p] + [ctypes.POINTER(ctypes.c_ulong)] * 2
    lib.front_stop.argtypes = [ctypes.c_void_p]
    lib.front_set_content.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_char_p,
                                      ctypes.c_size_t, ctypes.c_int]
    # zero pages (no inode answered yet), touched only where published
    table = (ctypes.c_uint32 * INODES).from_buffer(mmap.mmap(-1, INODES * 4))
    spin_ns = int(float(os.environ.get(_SPIN_ENV, SPIN)) * 1e9)
    if len(os.sched_getaffinity(0)) < 2:
        spin_ns = 0
    handle = lib.front_start(pointer, ctypes.addressof(table), INODES, spin_ns)
    if not handle:
        log.info("FUSE served without a front: %s", os.strerror(ctypes.get_errno()))
        return None  # libfuse reads the device itself
    return Front(lib, handle, table)
