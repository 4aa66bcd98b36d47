"""Run a command with the fake as its /sys and /dev, in a private mount namespace.

The host's /sys and /dev are never touched: everything below happens after
``unshare(CLONE_NEWNS)`` with private propagation, so the binds exist only
for the command and its children.  As root that is all; an unprivileged
user also gets a user namespace mapping them to uid 0 (the FUSE mount was
made by fusermount3, so it is reachable from there).  Right before exec the
child hands a seccomp listener for its nd ioctls to the daemon (seccomp.py).
"""

from __future__ import annotations

import ctypes
import os
import sys

from fakesys.dev.ioctls import trapped_types
from fakesys.sandbox import seccomp

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

HOST_NODES = ("null", "zero", "full", "random", "urandom", "tty", "ptmx")
HOST_DIRS = ("pts", "shm")
PROC_FILES = ("iomem", "meminfo", "cmdline")   # served by the fake (fakesys/kernel/mm/setup.py)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.unshare.argtypes = [ctypes.c_int]


class SandboxError(RuntimeError):
    pass


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise SandboxError(f"{what}: {os.strerror(e)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    _check(_libc.mount(source.encode() if source else None, target.encode(),
                       fstype.encode() if fstype else None, flags, None),
           f"mount {source} on {target}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


BIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "bin")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def mount_namespace() -> int:
    """The inode of this process's mount namespace."""
    return os.stat("/proc/self/ns/mnt").st_ino


def require_private_namespace(host_ns: int, targets=("/sys", "/dev", "/proc")) -> None:
    """Refuse to go on unless this process left the mount namespace
    ``host_ns`` and the mounts holding each of ``targets`` are visible and
    private: the binds over /sys and /dev that follow must never reach the
    host's (in a chroot, a directory of an unreachable shared mount would
    propagate them)."""
    if mount_namespace() == host_ns:
        raise SandboxError("refusing to mount over /sys and /dev: not in a private mount namespace")
    mounts: dict[str, bool] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            optional = fields[6:fields.index("-")]
            mounts[fields[4]] = any(opt.startswith("shared:") for opt in optional)
    for target in targets:
        holders = [m for m in mounts if target == m or target.startswith(m.rstrip("/") + "/")]
        if not holders:
            raise SandboxError(f"refusing to mount over {target}: the mount holding it is out of reach")
        if mounts[max(holders, key=len)]:
            raise SandboxError(f"refusing to mount over {target}: its mount still propagates to the host")


def make_private() -> None:
    """Stop mount propagation to and from the host for every mount we can see.

    Normally one recursive change on / does it; in a chroot whose root is no
    mount point that fails (EINVAL), so each visible mount point is made
    private on its own (they are listed relative to our root).
    """
    try:
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        return
    except SandboxError:
        pass
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in points:
        if point.startswith("/") and os.path.exists(point):
            try:
                mount(None, point, None, MS_REC | MS_PRIVATE)
            except SandboxError:
                pass


def enter(mnt: str) -> None:
    """In the calling process: a private mount namespace with the fake mounted.

    ``mnt`` is the daemon's FUSE mount; it holds ``sys/`` and ``dev/``.
    """
    uid, gid = os.getuid(), os.getgid()
    host_ns = mount_namespace()
    if uid == 0:
        unshare(CLONE_NEWNS)
    else:
        unshare(CLONE_NEWNS | CLONE_NEWUSER)
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")
    make_private()
    require_private_namespace(host_ns)
    fake_sys = os.path.join(mnt, "sys")
    fake_dev = os.path.join(mnt, "dev")
    if not os.path.isdir(os.path.join(fake_sys, "bus")):
        raise SandboxError(f"{mnt} does not hold a fakesys tree")
    # The host's basic nodes go over the placeholders first (in this namespace
    # only), then the whole fake /dev, with those submounts, covers /dev.
    for name in HOST_NODES:
        src = os.path.join("/dev", name)
        if os.path.exists(src):
            mount(src, os.path.join(fake_dev, name), None, MS_BIND)
    for name in HOST_DIRS:
        src = os.path.join("/dev", name)
        if os.path.isdir(src):
            mount(src, os.path.join(fake_dev, name), None, MS_BIND | MS_REC)
    mount(fake_sys, "/sys", None, MS_BIND | MS_REC)
    mount(fake_dev, "/dev", None, MS_BIND | MS_REC)
    # The machine's view of memory: its files go over the host's /proc ones
    # (one bind per file, in this namespace only; /proc itself stays the host's).
    for name in PROC_FILES:
        src = os.path.join(mnt, "proc", name)
        if os.path.isfile(src) and os.path.exists(os.path.join("/proc", name)):
            mount(src, os.path.join("/proc", name), None, MS_BIND)


def trap_ioctls(mnt: str) -> None:
    """Send the ioctls the bridge serves (dev/ioctls.py) of this process and
    its children to the daemon of ``mnt``."""
    try:
        seccomp.trap_ioctls(os.path.join(os.path.dirname(mnt), "ctl"), trapped_types())
    except OSError as e:
        print(f"fakesys run: nd ioctls will fail: {e.strerror or e}", file=sys.stderr)


def run(mnt: str, argv: list[str], trap: bool = True) -> int:
    """Fork, enter the sandbox in the child, exec ``argv``; return its exit status.

    ``trap``: whether the daemon serves ioctls and dax opens (not with
    ``--no-ioctl``).  Without a daemon to answer them, the trapped syscalls
    would fail with ENOSYS, O_RDWR opens of ``/dev/null`` included, so no
    filter is installed at all."""
    pid = os.fork()
    if pid == 0:
        try:
            enter(mnt)
            if trap:
                trap_ioctls(mnt)
            # modprobe asks the daemon (fakesys/data/bin/modprobe), never the host kernel
            os.environ["FAKESYS_CTL"] = os.path.join(os.path.dirname(mnt), "ctl")
            os.environ["PATH"] = BIN_DIR + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin")
            os.execvp(argv[0], argv)
        except SandboxError as e:
            print(f"fakesys run: {e}", file=sys.stderr)
            os._exit(126)
        except FileNotFoundError:
            print(f"fakesys run: {argv[0]}: command not found", file=sys.stderr)
            os._exit(127)
        except OSError as e:
            print(f"fakesys run: {argv[0]}: {e.strerror}", file=sys.stderr)
            os._exit(126)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
        except KeyboardInterrupt:
            continue
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
