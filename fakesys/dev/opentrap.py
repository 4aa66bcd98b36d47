"""Trapped O_RDWR opens: the /dev/daxR.N data path.

The seccomp filter sends every ``open``/``openat`` with an O_RDWR access
mode (and every ``openat2``) of a sandboxed process here.  For each one,
in the listener's thread (never the trio thread: resolving the path may
need our own FUSE server, see bridge.py):

1. read the path (and the open_how of openat2) from the caller's memory;
2. resolve it as the caller would, to an O_PATH fd: absolute paths inside
   the caller's root (``/proc/PID/root`` with RESOLVE_IN_ROOT), relative
   ones from its cwd or dirfd (absolute symlinks met on a relative path
   are resolved from our root: such an open is then simply not trapped);
3. if that is a character node of our FUSE mount whose numbers are a dax
   device's, ask the model (trio thread) whether the device is live: no
   -> ENXIO, as opening a dax node without a bound device_dax does; yes ->
   open the device's backing file (daxmedia.py) and install that fd as the
   open's result (SECCOMP_IOCTL_NOTIF_ADDFD + SEND, O_CLOEXEC if asked);
4. anything else continues as if never trapped.

So ``lstat("/dev/dax0.0")`` still shows the char device daxctl checks,
while the application's fd is a regular file of the device's size that it
can mmap(MAP_SHARED) at native speed, coherently with every other process.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import stat
import struct

import trio

from fakesys.sandbox.seccomp import SYS_open, SYS_openat, SYS_openat2, ProcessMemory

log = logging.getLogger("fakesys.dev")

OPEN_SYSCALLS = (SYS_open, SYS_openat, SYS_openat2)
AT_FDCWD = -100
RESOLVE_IN_ROOT = 0x10
PATH_MAX = 4096
_OPEN_HOW = struct.Struct("<QQQ")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def openat2(dirfd: int, path: bytes, flags: int, resolve: int = 0) -> int:
    how = ctypes.create_string_buffer(_OPEN_HOW.pack(flags, 0, resolve))
    fd = _libc.syscall(ctypes.c_long(SYS_openat2), ctypes.c_long(dirfd), ctypes.c_char_p(path),
                       how, ctypes.c_size_t(_OPEN_HOW.size))
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return int(fd)


def _signed32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def resolve(pid: int, dirfd: int, path: bytes, flags: int, resolve_flags: int = 0) -> os.stat_result:
    """lstat/stat of what the caller's open would reach (an O_PATH fd of it)."""
    if path.startswith(b"/"):
        base_path, rel, how = f"/proc/{pid}/root", path.lstrip(b"/") or b".", RESOLVE_IN_ROOT
    else:
        base_path = f"/proc/{pid}/cwd" if dirfd == AT_FDCWD else f"/proc/{pid}/fd/{dirfd}"
        rel, how = path, 0
    base = os.open(base_path, os.O_PATH | os.O_CLOEXEC)
    try:
        fd = openat2(base, rel, os.O_PATH | os.O_CLOEXEC | (flags & os.O_NOFOLLOW), how | resolve_flags)
    finally:
        os.close(base)
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


class DaxOpens:
    """Answers trapped opens of dax nodes with their media (see module doc)."""

    def __init__(self, media, mount: str | None) -> None:
        self.media = media
        self.mount = mount
        self._mount_dev: int | None = None

    def mount_dev(self) -> int | None:
        if self._mount_dev is None and self.mount:
            try:
                self._mount_dev = os.stat(self.mount).st_dev
            except OSError:
                return None
        return self._mount_dev

    def handle(self, listener, note, token) -> None:
        """Answer one trapped open (from a listener thread)."""
        try:
            found = self._find(note)
        except OSError:
            found = None        # unreadable path, nothing there, ...: the real open decides
        if found is None:
            listener.reply(note.id, cont=True)
            return
        devt, flags = found
        try:
            got = trio.from_thread.run_sync(self.media.lookup, devt, trio_token=token)
        except LookupError as e:
            log.debug("pid %d open of %d:%d: %s", note.pid, *devt, e)
            listener.reply(note.id, error=errno.ENXIO)
            return
        except (trio.RunFinishedError, trio.Cancelled):
            listener.reply(note.id, error=errno.ENXIO)
            return
        if got is None:
            listener.reply(note.id, cont=True)
            return
        path, size = got
        try:
            fd = self.media.open(path, size, flags)
        except OSError as e:
            log.warning("opening the media %s: %s", path, e)
            listener.reply(note.id, error=e.errno or errno.EIO)
            return
        try:
            if listener.valid(note.id):
                listener.reply_fd(note.id, fd, cloexec=bool(flags & os.O_CLOEXEC))
        except OSError as e:
            if e.errno != errno.ENOENT:        # ENOENT: the caller went away meanwhile
                log.warning("installing the media fd in %d: %s", note.pid, e)
                listener.reply(note.id, error=e.errno or errno.EIO)
        finally:
            os.close(fd)

    def _find(self, note) -> tuple[tuple[int, int], int] | None:
        """(devt, open flags) when the trapped open names a char node of ours."""
        args = note.args
        resolve_flags = 0
        if note.nr == SYS_open:
            dirfd, path_at, flags = AT_FDCWD, args[0], args[1]
        elif note.nr == SYS_openat:
            dirfd, path_at, flags = _signed32(args[0]), args[1], args[2]
        else:
            if args[3] < _OPEN_HOW.size:
                return None
            flags, _mode, resolve_flags = _OPEN_HOW.unpack(ProcessMemory(note.pid, args[2]).read(0, _OPEN_HOW.size))
            dirfd, path_at = _signed32(args[0]), args[1]
        flags &= 0xFFFFFFFF
        if flags & os.O_ACCMODE != os.O_RDWR or flags & (os.O_PATH | os.O_DIRECTORY):
            return None
        path = ProcessMemory(note.pid, path_at).read_string(PATH_MAX)
        if path is None or not path:
            return None
        st = resolve(note.pid, dirfd, path, flags, resolve_flags)
        if not stat.S_ISCHR(st.st_mode) or st.st_dev != self.mount_dev():
            return None
        return (os.major(st.st_rdev), os.minor(st.st_rdev)), flags
