"""The ioctl bridge: serves the trapped ioctls of sandboxed tools.

``fakesys run`` hands the daemon one seccomp listener per tool run
(sandbox/seccomp.py).  Each listener is served by its own OS thread, never
by the trio thread that serves FUSE: identifying a caller's fd means
resolving ``/proc/PID/fd/N``, which may be a file on our own FUSE mount,
and reading the caller's memory may fault pages in from anywhere; doing
either on the FUSE thread deadlocks both sides (mechanism.md, pitfall 1).
The thread reads and writes caller memory itself and hops to the trio
loop (``trio.from_thread.run_sync``) only for the model work, which never
touches caller memory.

For each trapped ``ioctl(fd, cmd, arg)``:

1. ``stat("/proc/PID/fd/N").st_rdev`` names the device, through the char
   device numbers the daemon installed (``PtyNumbers``).  An fd that is
   not one of our nodes gets SECCOMP_USER_NOTIF_FLAG_CONTINUE: the real
   syscall runs as if never trapped.
2. ``/proc/PID/fdinfo/N`` tells whether the file was opened read-only.
3. The handler for the node's chrdev name (dev/ioctls.py) prepares the
   request from the caller's buffer (this thread), the notification is
   checked to be still valid, the handler dispatches it (trio thread), the
   buffer is copied back and the return value or errno is sent.

A handler is a module or object with ``prepare(device, nr, read)`` and
``dispatch(device, request, read_only)``, where ``request.buf`` is what to
copy back (see kernel/nvdimm/ioctl.py); dev/ioctls.py registers them.

Measured on a 2-vCPU VM (bench/ioctl.py): a served ioctl costs 110-230 µs
(median), of which ~12 µs is the trap itself (a trapped ioctl answered
CONTINUE), ~45 µs the Python work of this thread and the rest the two
thread hand-offs to and from the trio loop.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import stat
import threading

import trio

from fakesys.dev import ioctls
from fakesys.dev.opentrap import OPEN_SYSCALLS
from fakesys.dev.pty import PtyNumbers
from fakesys.errors import Errno
from fakesys.kernel.fs.char_dev import set_chrdev_numbers
from fakesys.sandbox.seccomp import AUDIT_ARCH_X86_64, SYS_ioctl, Listener, ProcessMemory

log = logging.getLogger("fakesys.dev")


class IoctlBridge:
    """Owns the node numbers (ptys) and the listener threads of one daemon."""

    def __init__(self, kernel, trio_token: trio.lowlevel.TrioToken | None = None,
                 handlers: dict | None = None, opens=None) -> None:
        self.kernel = kernel
        self.opens = opens  # answers trapped O_RDWR opens (opentrap.DaxOpens), or None
        self.handlers = handlers if handlers is not None else ioctls.handlers()
        self.numbers = PtyNumbers(set(self.handlers))
        self.token = trio_token or trio.lowlevel.current_trio_token()
        self._threads: list[threading.Thread] = []
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._stopping = False
        self.after_change = None  # async callable run after a command that changed the model
        with self.numbers.batch():
            set_chrdev_numbers(kernel, self.numbers)

    # -- lifetime --------------------------------------------------------------

    def serve(self, listener_fd: int) -> None:
        """Serve one listener (ours from now on) until its tools are gone."""
        if self._stopping:
            os.close(listener_fd)
            return
        listener = Listener(listener_fd)
        if not listener.set_sync_wakeup():
            log.debug("SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP not available")
        t = threading.Thread(target=self._serve, args=(listener,), name=f"ioctl-{listener_fd}",
                             daemon=True)
        self._threads = [x for x in self._threads if x.is_alive()]
        self._threads.append(t)
        t.start()

    def close(self) -> None:
        """Stop serving, free the ptys and their guards.

        The threads notice at their next wake-up and close their listeners
        (trapped ioctls then fail with ENOSYS); they are not joined, as one
        may be waiting for this very trio thread.
        """
        self._stopping = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        self.numbers.close()

    # -- the listener thread ----------------------------------------------------

    def _serve(self, listener: Listener) -> None:
        poller = select.poll()
        poller.register(listener.fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        try:
            while not self._stopping:
                events = dict(poller.poll())
                if self._wake_r in events or self._stopping:
                    return
                ev = events.get(listener.fd, 0)
                if ev & select.POLLIN:
                    note = listener.recv()
                    if note is not None:
                        self._handle(listener, note)
                elif ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                    return                          # every process using the filter is gone
        except Exception:
            log.exception("ioctl listener failed")
        finally:
            listener.close()

    def _handle(self, listener: Listener, note) -> None:
        if note.arch == AUDIT_ARCH_X86_64 and note.nr in OPEN_SYSCALLS and self.opens is not None:
            self.opens.handle(listener, note, self.token)
            return
        if note.arch != AUDIT_ARCH_X86_64 or note.nr != SYS_ioctl:
            listener.reply(note.id, cont=True)
            return
        fd = note.args[0] & 0xFFFFFFFF
        cmd = note.args[1] & 0xFFFFFFFF
        try:
            st = os.stat(f"/proc/{note.pid}/fd/{fd}")
        except OSError:
            listener.reply(note.id, cont=True)      # the real ioctl reports EBADF
            return
        found = self.numbers.lookup(st.st_rdev) if stat.S_ISCHR(st.st_mode) else None
        if found is None:
            listener.reply(note.id, cont=True)
            return
        device, name = found
        handler = self.handlers[name]
        try:
            read_only = _access_mode(note.pid, fd) == os.O_RDONLY
            mem = ProcessMemory(note.pid, note.args[2], PREFETCH)
            req = handler.prepare(device, cmd & 0xFF, mem.read)
        except OSError:                              # the fd was closed meanwhile
            listener.reply(note.id, error=errno.EBADF)
            return
        except Exception:
            log.exception("preparing ioctl %#x on %s", cmd, device.name)
            listener.reply(note.id, error=errno.EIO)
            return
        if not listener.valid(note.id):
            return                                   # the caller died meanwhile
        try:
            rc = trio.from_thread.run_sync(_dispatch, handler, device, req, read_only,
                                           trio_token=self.token)
            if getattr(req, "dirty", False) and self.after_change is not None:
                # what the command changed shows in sysfs before it returns
                trio.from_thread.run(self.after_change, trio_token=self.token)
        except (trio.RunFinishedError, trio.Cancelled):
            rc = -errno.ENXIO
        _reply(listener, note, device, cmd, rc, req, mem)


#: bytes of the caller's buffer read at once (covers a 4 KiB label transfer)
PREFETCH = 8192


def _reply(listener, note, device, cmd, rc, req, mem) -> None:
    if rc >= 0 and req.buf:
        if not listener.valid(note.id):
            return
        try:
            mem.write(0, bytes(req.buf))
        except Errno as e:
            rc = -e.errno
    if log.isEnabledFor(logging.DEBUG):
        log.debug("pid %d ioctl(%s, %#x) = %d", note.pid, device.name, cmd, rc)
    if rc < 0:
        listener.reply(note.id, error=-rc)
    else:
        listener.reply(note.id, value=rc)


def _dispatch(handler, device, req, read_only: bool) -> int:
    """On the trio thread: the model part of one ioctl; negative errno on failure."""
    try:
        return handler.dispatch(device, req, read_only)
    except Errno as e:
        return -e.errno
    except Exception:
        log.exception("ioctl on %s failed", getattr(device, "name", device))
        return -errno.EIO


def _access_mode(pid: int, fd: int) -> int:
    """O_ACCMODE of an open file of another process (from /proc/PID/fdinfo)."""
    f = os.open(f"/proc/{pid}/fdinfo/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        info = os.read(f, 4096)
    finally:
        os.close(f)
    at = info.find(b"flags:")
    if at < 0:
        raise OSError(errno.EBADF, "no flags in fdinfo")
    return int(info[at + 6:info.index(b"\n", at)], 8) & os.O_ACCMODE
