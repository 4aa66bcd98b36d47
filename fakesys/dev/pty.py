"""Character device numbers backed by pseudo-terminals.

A tool opens ``/dev/nmem0`` O_RDWR, fstats it and wants a character
device whose numbers are those in ``nmem0/dev``.  A FUSE inode cannot be
that (mechanism.md), a pseudo-terminal slave can: the daemon opens
``/dev/ptmx``, unlocks the new pty and keeps the master open for as long
as the device exists; the fake publishes the slave's numbers (136:N) in
sysfs and devtmpfs makes ``dev/nmem0`` a symlink to ``pts/N``, which the
launcher's bind of the host ``/dev/pts`` resolves.  The tool's ioctls on
that fd are trapped by seccomp and served by the bridge (bridge.py); its
other syscalls reach a harmless tty.

A session leader without a controlling terminal that opens a tty without
O_NOCTTY acquires it, which would tie the daemon's pty to the tool's
session.  So every pty is made the controlling terminal of a guard: a
tiny forked process in a session of its own that holds the slave and does
nothing else (a tty belongs to at most one session, so the tool cannot
get it).  Guards die with the daemon (PR_SET_PDEATHSIG) and are killed
when their device goes away.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import signal
import struct
from collections.abc import Iterator

log = logging.getLogger("fakesys.dev")

TIOCGPTN = 0x80045430     # _IOR('T', 0x30, unsigned int)
TIOCSPTLCK = 0x40045431   # _IOW('T', 0x31, int)
TIOCSCTTY = 0x540E
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True)


class Pty:
    """One pseudo-terminal: the master fd we keep, the slave's path and numbers."""

    def __init__(self, ptmx: str = "/dev/ptmx") -> None:
        self.master = os.open(ptmx, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            fcntl.ioctl(self.master, TIOCSPTLCK, struct.pack("i", 0))      # unlockpt()
            self.index = struct.unpack("I", fcntl.ioctl(self.master, TIOCGPTN, b"\0" * 4))[0]
            self.path = f"/dev/pts/{self.index}"
            self.rdev = os.stat(self.path).st_rdev
            self.guard, self._ready = _start_guard(self.path)
        except BaseException:
            os.close(self.master)
            raise

    def settle(self) -> None:
        """Wait until the guard holds the slave as its controlling terminal.

        Separate from the fork so that a daemon booting several devices
        forks every guard first and waits once: each guard takes ~4 ms to
        get going (copy-on-write faults of a forked Python), in parallel.
        """
        if self._ready < 0:
            return
        try:
            ok = os.read(self._ready, 1)
        finally:
            os.close(self._ready)
            self._ready = -1
        if ok != b"1":
            os.waitpid(self.guard, 0)
            self.guard = 0
            raise OSError(f"could not make {self.path} the controlling terminal of a guard")

    @property
    def devt(self) -> tuple[int, int]:
        return os.major(self.rdev), os.minor(self.rdev)

    @property
    def target(self) -> str:
        """The node's path relative to /dev."""
        return f"pts/{self.index}"

    def close(self) -> None:
        if self._ready >= 0:
            os.close(self._ready)
            self._ready = -1
        if self.guard:
            try:
                os.kill(self.guard, signal.SIGKILL)
                os.waitpid(self.guard, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.guard = 0
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


def _start_guard(path: str) -> tuple[int, int]:
    """Fork a process that makes ``path`` its controlling terminal and waits
    to be killed; returns its pid and the pipe it reports success on."""
    parent = os.getpid()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: system calls only, then wait
        try:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
                signal.signal(sig, signal.SIG_DFL)
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:
                os._exit(0)
            os.setsid()
            fd = os.open(path, os.O_RDWR)          # no O_NOCTTY: it becomes ours
            fcntl.ioctl(fd, TIOCSCTTY, 0)          # (and make sure of it)
            low = 0
            for keep in sorted((fd, w)):
                os.closerange(low, keep)
                low = keep + 1
            os.closerange(low, os.sysconf("SC_OPEN_MAX"))
            os.write(w, b"1")
            os.close(w)
            while True:
                signal.pause()
        except BaseException:
            pass
        os._exit(1)
    os.close(w)
    return pid, r


class PtyNumbers:
    """The kernel's char device number provider (kernel.ChrdevNumbers) for ``names``.

    ``lookup(rdev)`` may be called from any thread: it reads one dict.
    """

    def __init__(self, names: set[str] | frozenset[str], ptmx: str = "/dev/ptmx") -> None:
        self.names = frozenset(names)
        self.ptmx = ptmx
        self._by_dev: dict[object, Pty] = {}
        self._by_rdev: dict[int, tuple[object, str]] = {}
        self._gone: dict[int, tuple[object, str]] = {}    # numbers of removed devices
        self._batch: list[Pty] | None = None

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Claims made inside settle together at the end (see Pty.settle)."""
        self._batch = []
        try:
            yield
        finally:
            ptys, self._batch = self._batch, None
            for pty in ptys:
                pty.settle()

    def claim(self, dev, name: str):
        if name not in self.names:
            return None
        pty = Pty(self.ptmx)
        if self._batch is not None:
            self._batch.append(pty)
        else:
            try:
                pty.settle()
            except BaseException:
                pty.close()
                raise
        self._by_dev[dev] = pty
        self._by_rdev[pty.rdev] = (dev, name)
        self._gone.pop(pty.rdev, None)
        log.debug("%s: %s is /dev/%s (%d:%d)", name, dev.name, pty.target, *pty.devt)
        return pty.devt, pty.target

    def release(self, dev) -> None:
        pty = self._by_dev.pop(dev, None)
        if pty is not None:
            got = self._by_rdev.pop(pty.rdev, None)
            if got is not None:
                # a file still open on the gone device gets what nd_ioctl
                # answers for it (ENXIO), not the hung-up pty's EIO
                self._gone[pty.rdev] = got
            pty.close()

    def lookup(self, rdev: int) -> tuple[object, str] | None:
        """The device (and chrdev name) whose node has these numbers; a
        device that was removed while its node was open is still found."""
        return self._by_rdev.get(rdev) or self._gone.get(rdev)

    def close(self) -> None:
        for dev in list(self._by_dev):
            self.release(dev)
        self._gone.clear()
