"""The bytes behind /dev/daxR.N: one backing file per dax device.

An application's ``open("/dev/daxR.N", O_RDWR)`` is trapped (bridge.py)
and answered with an fd of the device's backing file, so its
``mmap(MAP_SHARED)`` is an ordinary shared file mapping: native speed and
coherent between processes.  Device offset 0 is file offset 0; the
``mappingN`` ranges are the model's bookkeeping and do not matter here.

* Files live in ``<state>/dax`` (or a private temporary directory when
  the machine has no state directory).  A device on persistent media (a
  pmem devdax namespace) has the file ``pmem-<info block uuid>.media``,
  which survives unbind, ``down`` and ``up`` like the namespace does;
  devices on volatile memory (hmem) have ``<host>-<daxR.N>.media``, which
  is removed when the device goes away and at every boot.
* The file is sized to the device at each open (a resize is only possible
  while the device is disabled, when it cannot be opened).

Kernel-model calls (what a devt is, whether the device is live) must run
on the trio thread; file operations may run anywhere.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

from fakesys.kernel.dax.bus import DevDax

log = logging.getLogger("fakesys.dev")

# open flags kept for the media fd; the rest (O_CREAT, O_EXCL, O_TRUNC,
# O_NOCTTY, O_DIRECT, ...) mean nothing for a char device or would harm the media
KEPT_FLAGS = (os.O_ACCMODE | os.O_NONBLOCK | os.O_APPEND | os.O_SYNC | os.O_DSYNC
              | getattr(os, "O_NOATIME", 0))


class DaxMedia:
    """Backing files of the dax devices of one kernel."""

    def __init__(self, kernel, state_dir: str | None) -> None:
        self.kernel = kernel
        self._tmp = None
        if state_dir:
            self.dir = os.path.join(state_dir, "dax")
        else:
            self._tmp = self.dir = tempfile.mkdtemp(prefix="fakesys-dax-")
        os.makedirs(self.dir, exist_ok=True)
        for name in os.listdir(self.dir):        # volatile memory does not survive a boot
            if not name.startswith("pmem-"):
                try:
                    os.unlink(os.path.join(self.dir, name))
                except OSError:
                    pass
        kernel.devnode_listeners.append(self._devnode_changed)

    def path(self, dev) -> str:
        return os.path.join(self.dir, dev.media_key() + ".media")

    def lookup(self, devt: tuple[int, int]):
        """(trio thread) The live dax device behind ``devt``: (path, size), or
        None when ``devt`` is no dax device; raises ENXIO-worthy LookupError
        when it is one but has no driver behind its char device."""
        dev = self.kernel.dax.device_by_devt(devt) if self.kernel.dax is not None else None
        if dev is None:
            return None
        if not dev.live:
            raise LookupError(f"{dev.name} is not enabled in devdax mode")
        return self.path(dev), dev.size

    @staticmethod
    def open(path: str, size: int, flags: int) -> int:
        """A new fd of the backing file (own file offset), sized to the device."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | (flags & KEPT_FLAGS & ~os.O_ACCMODE),
                     0o600)
        try:
            if os.fstat(fd).st_size != size:
                os.ftruncate(fd, size)
            mode = flags & os.O_ACCMODE
            if mode != os.O_RDWR:      # reopen with the caller's access mode
                again = os.open(f"/proc/self/fd/{fd}", mode | os.O_CLOEXEC | (flags & KEPT_FLAGS & ~os.O_ACCMODE))
                os.close(fd)
                fd = again
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _devnode_changed(self, node, removed: bool) -> None:
        dev = node.device
        if not removed or not isinstance(dev, DevDax) or dev.region.persistent_id is not None:
            return
        try:
            os.unlink(self.path(dev))
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("could not remove the media of %s: %s", dev.name, e)

    def close(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
