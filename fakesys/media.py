"""Byte stores: media in sparse files mapped with numpy.memmap, or in memory.

The emulated kernel reads and writes DIMM media and label areas through
these; a file per store lives in the state directory so the content
survives ``fakesys down``/``up``.  ``Memory`` is the same interface without
a file, for volatile media and unit tests: an anonymous mapping, whose
untouched pages cost nothing, and which needs no numpy (a fake without a
state directory starts without importing it).
"""

from __future__ import annotations

import errno
import mmap
import os
import stat

_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)  # Linux's value; Python names it from 3.12


class Memory:
    """A byte store in anonymous memory (lost at exit)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._buf = self._anonymous(size)

    @staticmethod
    def _anonymous(size: int):
        # MAP_NORESERVE: emulated DIMMs may be larger than this machine's
        # memory; only the pages written take any
        return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | _MAP_NORESERVE) if size else bytearray()

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError(f"access [{offset:#x}, +{length:#x}) outside a {self.size:#x}-byte store")

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        return bytes(self._buf[offset:offset + length])

    def write(self, offset: int, data: bytes) -> None:
        self._check(offset, len(data))
        self._buf[offset:offset + len(data)] = data

    def flush(self) -> None:
        pass

    def zero(self) -> None:
        """Power gone from RAM: every byte reads 0 again (the pages are dropped)."""
        if self.size:
            self._buf.madvise(mmap.MADV_DONTNEED)


class FileStore(Memory):
    """A byte store in a sparse file of exactly ``size`` bytes.

    Writes land in a shared mapping, so a killed daemon loses none of them;
    the host writes them back in its own time and order.  A ``durable``
    store (label areas) writes each write through to the file before it
    returns, as _LSW/SET_CONFIG_DATA is durable on return: the two-index
    label update (label, then index) then keeps its order on the file even
    across a host crash.
    """

    durable = False

    def __init__(self, path: str, size: int) -> None:
        self.path = path
        self.size = size
        self._buf = self._map(size)

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        return self._buf[offset:offset + length].tobytes()

    def _map(self, size: int, truncate: bool = False):
        """Open the file (never through a symlink, never anything but a regular
        file: the state directory must not lead writes elsewhere), size it and
        map it."""
        # numpy is imported here and in write(), not at the top: a machine
        # without a state directory never maps a file, and importing numpy
        # is some 130 ms of every such `fakesys up` (bench/foundation.py)
        import numpy as np
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "r+b") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, f"{self.path} is not a regular file")
            if truncate:
                os.ftruncate(fd, 0)
            if os.fstat(fd).st_size != size:
                os.ftruncate(fd, size)
            return np.memmap(f, dtype=np.uint8, mode="r+", shape=(size,)) if size else np.zeros(0, np.uint8)

    def write(self, offset: int, data: bytes) -> None:
        import numpy as np
        self._check(offset, len(data))
        self._buf[offset:offset + len(data)] = np.frombuffer(data, dtype=np.uint8)
        if self.durable and data:
            self.flush_range(offset, len(data))

    def flush_range(self, offset: int, length: int) -> None:
        """msync() the pages of [offset, offset + length)."""
        mm = getattr(self._buf, "_mmap", None)
        if mm is None:
            return
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        mm.flush(start, offset + length - start)

    def flush(self) -> None:
        if self.size:
            self._buf.flush()

    def zero(self) -> None:
        """Every byte reads 0 again, without writing them: the file is
        truncated to nothing and grown back (sparse), then mapped anew."""
        if not self.size:
            return
        self.flush()
        self._buf = None                    # drop the mapping before truncating
        self._buf = self._map(self.size, truncate=True)


class Slice:
    """A window ``[offset, offset + size)`` of another store, with the same
    interface (what a driver memremaps out of a larger range)."""

    def __init__(self, store, offset: int, size: int) -> None:
        if offset < 0 or size < 0 or offset + size > store.size:
            raise ValueError(f"slice [{offset:#x}, +{size:#x}) outside a {store.size:#x}-byte store")
        self.store = store
        self.offset = offset
        self.size = size

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError(f"access [{offset:#x}, +{length:#x}) outside a {self.size:#x}-byte slice")

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        return self.store.read(self.offset + offset, length)

    def write(self, offset: int, data: bytes) -> None:
        self._check(offset, len(data))
        self.store.write(self.offset + offset, data)

    def flush(self) -> None:
        self.store.flush()
