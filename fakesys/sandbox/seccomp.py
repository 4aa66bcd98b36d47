"""Seccomp user notification for the nd ioctls of sandboxed tools.

Both halves of the mechanism in mechanism.md ("ioctls: seccomp user
notification"), with no trio and no FUSE in here:

* launcher side, :func:`trap_ioctls`, run by ``fakesys run`` in the child
  right before ``exec``: sets PR_SET_NO_NEW_PRIVS, installs a BPF filter
  that sends ``ioctl(fd, cmd, arg)`` with ``cmd`` of type 'N' and number
  below 0x40 to user notification (x86-64 syscalls only; everything else,
  including the NVMe 'N' ioctls 0x40-0x7F, is allowed), passes the
  listener to the daemon over its control socket (SCM_RIGHTS), waits for
  the daemon's answer and closes its own copy.  The filter is inherited by
  every descendant of the tool.  The same filter traps ``open``/``openat``
  with an O_RDWR access mode, and every ``openat2`` (BPF cannot read its
  ``struct open_how``): that is how an application's open of /dev/daxR.N
  gets the device's media instead (mechanism.md, "Device-DAX media").
* supervisor side: :class:`Listener` (receive a notification, check it is
  still valid, answer it, or answer it with an fd of ours installed in the
  caller) and :class:`ProcessMemory` (the caller's buffer through
  process_vm_readv/writev).

If the daemon goes away, the listener is closed with it and a trapped
ioctl fails with ENOSYS instead of hanging.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import socket
import struct
from dataclasses import dataclass
from typing import Sequence

from fakesys.errors import Errno
from fakesys.control import recv_line

# include/uapi/linux/{prctl,seccomp,audit,filter}.h, x86-64 syscall numbers
PR_SET_NO_NEW_PRIVS = 38
SYS_seccomp = 317
SYS_ioctl = 16
SYS_open = 2
SYS_openat = 257
SYS_openat2 = 437
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 5
SECCOMP_RET_USER_NOTIF = 0x7FC00000
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
SYS_init_module, SYS_delete_module, SYS_finit_module = 175, 176, 313
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP = 1
AUDIT_ARCH_X86_64 = 0xC000003E

# SECCOMP_IOCTL_NOTIF_*: _IOWR/_IOW('!', nr, type)
NOTIF_RECV = 0xC0502100       # struct seccomp_notif (80 bytes)
NOTIF_SEND = 0xC0182101       # struct seccomp_notif_resp (24 bytes)
NOTIF_ID_VALID = 0x40082102   # __u64
NOTIF_SET_FLAGS = 0x40082104  # __u64, passed by value (kernel >= 6.6)
NOTIF_ADDFD = 0x40182103      # struct seccomp_notif_addfd (24 bytes)
SECCOMP_ADDFD_FLAG_SEND = 1 << 1   # install the fd and answer the syscall with it (5.14)

# classic BPF opcodes
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_AND_K = 0x54
_RET_K = 0x06
_O_ACCMODE, _O_RDWR = 3, 2

CONTROL_COMMAND = b"seccomp\n"

_NOTIF = struct.Struct("<QII iI Q 6Q")   # id, pid, flags, nr, arch, ip, args[6]
_RESP = struct.Struct("<QqiI")            # id, val, error, flags
_ADDFD = struct.Struct("<QIIII")          # id, flags, srcfd, newfd, newfd_flags

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_libc.ioctl.restype = ctypes.c_int


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_libc.process_vm_readv.argtypes = [ctypes.c_int, ctypes.POINTER(_Iovec), ctypes.c_ulong,
                                   ctypes.POINTER(_Iovec), ctypes.c_ulong, ctypes.c_ulong]
_libc.process_vm_readv.restype = ctypes.c_ssize_t
_libc.process_vm_writev.argtypes = _libc.process_vm_readv.argtypes
_libc.process_vm_writev.restype = ctypes.c_ssize_t


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


class SeccompError(OSError):
    pass


def supported() -> bool:
    """The filter is written for x86-64 syscall numbers."""
    return platform.machine() == "x86_64"


def ioctl_filter(types: Sequence[tuple[int, int]]) -> list[tuple[int, int, int, int]]:
    """The BPF program: (code, jt, jf, k) per instruction.

    Offsets are in struct seccomp_data: nr at 0, arch at 4, args[i] at
    16 + 8*i (the low half first).  ``types`` lists (type, nr_count) of
    the ioctls to trap: ``cmd & (0xFFFF & ~(nr_count - 1)) == type << 8``
    is "this type, number below nr_count" (e.g. 0xFFC0 and 0x4E00: 'N'
    below 0x40); the size and direction bits are left out, as the kernel
    ignores them for these commands.  ``flags & O_ACCMODE == O_RDWR``
    picks the opens that may be an application's open of a dax device.
    """
    prog: list = []
    labels: dict[str, int] = {}

    def emit(code: int, k: int = 0, jt: str | None = None, jf: str | None = None) -> None:
        prog.append((code, jt, jf, k))

    def label(name: str) -> None:
        labels[name] = len(prog)

    emit(_LD_W_ABS, 4)                                           # A = arch
    emit(_JEQ_K, AUDIT_ARCH_X86_64, None, "allow")
    emit(_LD_W_ABS, 0)                                           # A = nr
    emit(_JEQ_K, SYS_ioctl, "ioctl", None)
    emit(_JEQ_K, SYS_openat, "openat", None)
    emit(_JEQ_K, SYS_open, "open", None)
    emit(_JEQ_K, SYS_openat2, "notify", "allow")
    label("ioctl")
    for i, (ioc_type, nr_count) in enumerate(types):
        emit(_LD_W_ABS, 16 + 8 * 1)                              # A = low 32 bits of cmd
        emit(_AND_K, 0xFFFF & ~(nr_count - 1))
        emit(_JEQ_K, ioc_type << 8, "notify", f"ioctl{i + 1}" if i + 1 < len(types) else "allow")
        label(f"ioctl{i + 1}")
    if not types:
        emit(_JEQ_K, 0, "allow", "allow")
    label("openat")
    emit(_LD_W_ABS, 16 + 8 * 2)                                  # A = flags of openat
    emit(_AND_K, _O_ACCMODE)
    emit(_JEQ_K, _O_RDWR, "notify", "allow")
    label("open")
    emit(_LD_W_ABS, 16 + 8 * 1)                                  # A = flags of open
    emit(_AND_K, _O_ACCMODE)
    emit(_JEQ_K, _O_RDWR, "notify", "allow")
    label("notify")
    emit(_RET_K, SECCOMP_RET_USER_NOTIF)
    label("allow")
    emit(_RET_K, SECCOMP_RET_ALLOW)

    out = []
    for pc, (code, jt, jf, k) in enumerate(prog):
        rel = [0 if t is None else labels[t] - pc - 1 for t in (jt, jf)]
        assert all(0 <= r < 256 for r in rel)
        out.append((code, rel[0], rel[1], k))
    return out


def module_filter() -> list[tuple[int, int, int, int]]:
    """init_module, finit_module and delete_module fail with EPERM; the
    rest is allowed (other architectures included)."""
    return [
        (_LD_W_ABS, 0, 0, 4),                               # A = arch
        (_JEQ_K, 0, 6, AUDIT_ARCH_X86_64),                  # other arch: allow
        (_LD_W_ABS, 0, 0, 0),                               # A = nr
        (_AND_K, 0, 0, 0xFFFFFFFF & ~0x40000000),           # x32's numbers too
        (_JEQ_K, 2, 0, SYS_init_module),
        (_JEQ_K, 1, 0, SYS_finit_module),
        (_JEQ_K, 0, 1, SYS_delete_module),
        (_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.EPERM),
        (_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]


def deny_module_loading() -> None:
    """In a child before exec (``preexec_fn``): from here on this process and
    all it starts cannot load or unload kernel modules (EPERM).  What replay
    runs with a userland whose shell prefers its own ``modprobe`` must never
    reach the host's kernel.  A no-op where seccomp filters are unsupported."""
    if supported():
        _set_filter(module_filter(), 0)


def install_listener(types: Sequence[tuple[int, int]]) -> int:
    """In the calling (single-threaded) process: install the filter, return the listener fd."""
    flags = SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
    try:
        return _set_filter(ioctl_filter(types), flags)
    except SeccompError as e:
        if e.errno != errno.EINVAL:
            raise
        # kernel < 5.19
        return _set_filter(ioctl_filter(types), flags & ~SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV)


def _set_filter(insns: list[tuple[int, int, int, int]], flags: int) -> int:
    """no_new_privs, then seccomp(SET_MODE_FILTER) with ``insns``: what it returns
    (the listener fd with FLAG_NEW_LISTENER, else 0)."""
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        e = ctypes.get_errno()
        raise SeccompError(e, f"PR_SET_NO_NEW_PRIVS: {os.strerror(e)}")
    arr = (_SockFilter * len(insns))(*[_SockFilter(*i) for i in insns])
    prog = _SockFprog(len(insns), arr)
    rc = _libc.syscall(ctypes.c_long(SYS_seccomp), ctypes.c_long(SECCOMP_SET_MODE_FILTER),
                       ctypes.c_long(flags), ctypes.byref(prog))
    if rc < 0:
        e = ctypes.get_errno()
        raise SeccompError(e, f"seccomp(SET_MODE_FILTER): {os.strerror(e)}")
    return int(rc)


def trap_ioctls(control_path: str, types: Sequence[tuple[int, int]], timeout: float = 10.0) -> None:
    """Launcher side: hand a new listener for this process to the daemon at
    ``control_path``; ``types`` are the ioctls to trap (see :func:`ioctl_filter`).

    Raises SeccompError (OSError) if that is not possible; once the filter
    is installed but the daemon refused it (or answered ``off``: it runs
    without the bridge), trapped syscalls fail with ENOSYS, which is why
    ``fakesys run`` asks the daemon's status before calling this.
    """
    if not supported():
        raise SeccompError(errno.ENOSYS, f"ioctl trapping is x86-64 only, not {platform.machine()}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(control_path)
        listener = install_listener(types)
        try:
            socket.send_fds(sock, [CONTROL_COMMAND], [listener])
        finally:
            os.close(listener)
        reply = recv_line(sock)
    if reply.strip() == b"off":
        return                      # the daemon serves no ioctls: they fail with ENOSYS
    if reply.strip() != b"ok":
        raise SeccompError(errno.EPROTO, f"the daemon did not take the ioctl listener: {reply.decode(errors='replace').strip()!r}")


# ---------------------------------------------------------------------------
# supervisor side


@dataclass
class Notification:
    """struct seccomp_notif: one trapped syscall."""

    id: int
    pid: int
    nr: int
    arch: int
    args: tuple[int, ...]


class Listener:
    """A seccomp notification fd (owned: closed by :meth:`close`)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buf = ctypes.create_string_buffer(_NOTIF.size)
        self._resp = ctypes.create_string_buffer(_RESP.size)

    def set_sync_wakeup(self) -> bool:
        """SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: wake the supervisor on this CPU (kernel >= 6.6)."""
        return _libc.ioctl(self.fd, NOTIF_SET_FLAGS, ctypes.c_void_p(SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)) == 0

    def recv(self) -> Notification | None:
        """SECCOMP_IOCTL_NOTIF_RECV; None when the notification vanished (target gone)."""
        ctypes.memset(self._buf, 0, _NOTIF.size)
        while _libc.ioctl(self.fd, NOTIF_RECV, self._buf) != 0:
            e = ctypes.get_errno()
            if e == errno.EINTR:
                continue
            if e == errno.ENOENT:
                return None
            raise OSError(e, f"SECCOMP_IOCTL_NOTIF_RECV: {os.strerror(e)}")
        nid, pid, _flags, nr, arch, _ip, *args = _NOTIF.unpack(self._buf.raw)
        return Notification(nid, pid, nr, arch, tuple(args))

    def valid(self, nid: int) -> bool:
        """SECCOMP_IOCTL_NOTIF_ID_VALID: the target still waits (its pid is still it)."""
        return _libc.ioctl(self.fd, NOTIF_ID_VALID, ctypes.byref(ctypes.c_uint64(nid))) == 0

    def reply(self, nid: int, value: int = 0, error: int = 0, cont: bool = False) -> bool:
        """SECCOMP_IOCTL_NOTIF_SEND: ``error`` is a positive errno (0: return ``value``)."""
        _RESP.pack_into(self._resp, 0, nid, 0 if error else value, -error if error else 0,
                        SECCOMP_USER_NOTIF_FLAG_CONTINUE if cont else 0)
        return _libc.ioctl(self.fd, NOTIF_SEND, self._resp) == 0

    def reply_fd(self, nid: int, srcfd: int, cloexec: bool = False) -> int:
        """SECCOMP_IOCTL_NOTIF_ADDFD with SECCOMP_ADDFD_FLAG_SEND: a copy of
        ``srcfd`` becomes the trapped syscall's result (its fd number in the
        caller is returned).  Atomic: no fd leaks if the caller died."""
        buf = ctypes.create_string_buffer(_ADDFD.pack(nid, SECCOMP_ADDFD_FLAG_SEND, srcfd, 0,
                                                      os.O_CLOEXEC if cloexec else 0))
        fd = _libc.ioctl(self.fd, NOTIF_ADDFD, buf)
        if fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"SECCOMP_IOCTL_NOTIF_ADDFD: {os.strerror(e)}")
        return fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class ProcessMemory:
    """Another process's memory at ``base``, read and written in place.

    ``prefetch`` bytes are read at once up front (as far as they are
    mapped: the request is split at page boundaries, and the kernel stops
    at the first page it cannot read), so that the many small reads of an
    ioctl envelope cost one system call.  A read beyond what was fetched
    goes to the process again and fails with EFAULT exactly where the
    kernel's copy_from_user would.
    """

    PAGE = 4096

    def __init__(self, pid: int, base: int, prefetch: int = 0) -> None:
        self.pid = pid
        self.base = base
        self._cache = self._readv(0, prefetch) if prefetch else b""

    def _iovecs(self, offset: int, length: int):
        start = self.base + offset
        bounds = [start]
        nxt = (start // self.PAGE + 1) * self.PAGE
        while nxt < start + length:
            bounds.append(nxt)
            nxt += self.PAGE
        bounds.append(start + length)
        n = len(bounds) - 1
        remote = (_Iovec * n)(*[_Iovec(bounds[i], bounds[i + 1] - bounds[i]) for i in range(n)])
        return remote, n

    def _readv(self, offset: int, length: int) -> bytes:
        """As many bytes as are readable, from offset on (page by page)."""
        buf = ctypes.create_string_buffer(length)
        local = _Iovec(ctypes.cast(buf, ctypes.c_void_p), length)
        remote, n = self._iovecs(offset, length)
        got = _libc.process_vm_readv(self.pid, ctypes.byref(local), 1, remote, n, 0)
        return buf.raw[:got] if got > 0 else b""

    def read(self, offset: int, length: int) -> bytes:
        end = offset + length
        if end <= len(self._cache):
            return self._cache[offset:end]
        if length == 0:
            return b""
        data = self._readv(offset, length)
        if len(data) != length:
            raise Errno(errno.EFAULT, f"read {length} bytes at {self.base + offset:#x} of {self.pid}")
        return data

    def read_string(self, limit: int) -> bytes | None:
        """The NUL-terminated string at ``base`` (without its NUL), or None
        when no NUL is readable within ``limit`` bytes."""
        data = self._readv(0, limit)
        end = data.find(b"\0")
        return data[:end] if end >= 0 else None

    def write(self, offset: int, data: bytes) -> None:
        if not data:
            return
        buf = ctypes.create_string_buffer(bytes(data), len(data))
        local = _Iovec(ctypes.cast(buf, ctypes.c_void_p), len(data))
        remote = _Iovec(self.base + offset, len(data))
        n = _libc.process_vm_writev(self.pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
        if n != len(data):
            raise Errno(errno.EFAULT, f"write {len(data)} bytes at {self.base + offset:#x} of {self.pid}")
