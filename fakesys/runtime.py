"""Where fakes live on the host, and the rules that keep the host safe.

Each fake has a run directory (``/run/fakesys/NAME`` for root,
``$XDG_RUNTIME_DIR/fakesys/NAME`` or ``/tmp/fakesys-UID/NAME`` otherwise)
holding its FUSE mount point ``mnt``, control socket ``ctl``, ``pid`` and
``log``.  The mount point must never be the host's /sys or /dev or lie
below them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile

from fakesys.control import recv_line

FORBIDDEN = ("/sys", "/dev", "/proc")


class RuntimeErrorFakesys(RuntimeError):
    pass


def base_dir() -> str:
    if os.getuid() == 0:
        return "/run/fakesys"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return os.path.join(xdg, "fakesys")
    return f"/tmp/fakesys-{os.getuid()}"


def rundir(name: str) -> str:
    if not name or "/" in name or name.startswith(".") or "\0" in name:
        raise RuntimeErrorFakesys(f"bad fake name {name!r}")
    return os.path.join(base_dir(), name)


def remove_rundir(name: str) -> None:
    """Remove a stopped fake's run directory: its log, its empty mount
    point, the directory; whatever is not empty or not there stays."""
    rd = rundir(name)
    for entry in ("log", "mnt"):
        path = os.path.join(rd, entry)
        try:
            os.rmdir(path) if entry == "mnt" else os.unlink(path)
        except OSError:
            pass
    try:
        os.rmdir(rd)
    except OSError:
        pass


def refuse_host_paths(path: str) -> None:
    """Never mount over the host's /sys, /dev or /proc (or anything below)."""
    real = os.path.realpath(path)
    for bad in FORBIDDEN:
        if real == bad or real.startswith(bad + "/"):
            raise RuntimeErrorFakesys(f"refusing to mount on {real}: it is the host's {bad}")
    if real == "/":
        raise RuntimeErrorFakesys("refusing to mount on /")


def control(name: str, command: str, timeout: float = 10.0) -> str:
    path = os.path.join(rundir(name), "ctl")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(command.encode() + b"\n")
        return recv_line(s).decode().strip()


def status(name: str) -> dict | None:
    try:
        return json.loads(control(name, "status", timeout=2.0))
    except (OSError, ValueError):
        return None


def _mount_entry(path: str) -> list[str] | None:
    """The mountinfo fields of the mount at ``path``, or None.

    The mount point itself is never looked up: on the mount of a daemon
    that died without its connection being aborted, that would hang."""
    real = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4].replace("\\040", " ") == real:
                return fields
    return None


def is_mounted(path: str) -> bool:
    return _mount_entry(path) is not None


def abort_connection(path: str) -> bool:
    """Abort the FUSE connection of a fakesys mount whose daemon is gone.

    A daemon SIGKILLed while one of its threads waited in the kernel on
    its own mount (an invalidation waiting for a lock that a request in
    flight holds) cannot finish exiting, so its connection is never
    aborted: every access to the mount hangs and so does the daemon.
    Writing to the connection's ``abort`` file in the fusectl filesystem
    fails the requests in flight and lets everything go.  fusectl is
    mounted for that in a private mount namespace (root only), so the
    host's /sys is not touched.  Returns whether the abort was written.
    """
    fields = _mount_entry(path)
    if fields is None or os.getuid() != 0:
        return False
    if fields[fields.index("-") + 1] != "fuse.fakesys":
        return False
    conn = int(fields[2].split(":")[1])
    ctl = tempfile.mkdtemp(prefix="fakesys-fusectl-")
    try:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                # imported here: the sandbox (ctypes, libc) is some 20 ms that
                # status and down never need, and this child only runs on a dead fake
                from fakesys.sandbox.namespace import CLONE_NEWNS, MS_PRIVATE, MS_REC, mount, unshare
                unshare(CLONE_NEWNS)
                mount(None, "/", None, MS_REC | MS_PRIVATE)
                mount("fusectl", ctl, "fusectl", 0)   # gone with this namespace
                with open(os.path.join(ctl, str(conn), "abort"), "w") as f:
                    f.write("1")
                code = 0
            except BaseException:
                pass
            os._exit(code)
        _, status = os.waitpid(pid, 0)
    finally:
        os.rmdir(ctl)
    return os.waitstatus_to_exitcode(status) == 0


def unmount_stale(path: str) -> bool:
    """Detach a FUSE mount left behind by a killed daemon (aborting its
    connection first, so that nothing waiting on it hangs on)."""
    if not is_mounted(path):
        return False
    abort_connection(path)
    cmd = ["umount", "-l", path] if os.getuid() == 0 else ["fusermount3", "-u", "-z", path]
    subprocess.run(cmd, check=False, capture_output=True)
    return True


def instances() -> list[str]:
    base = base_dir()
    try:
        return sorted(n for n in os.listdir(base) if os.path.isdir(os.path.join(base, n)))
    except FileNotFoundError:
        return []


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
