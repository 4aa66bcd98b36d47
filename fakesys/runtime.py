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
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.decode().strip()


def status(name: str) -> dict | None:
    try:
        return json.loads(control(name, "status", timeout=2.0))
    except (OSError, ValueError):
        return None


def is_mounted(path: str) -> bool:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == real for line in f)


def unmount_stale(path: str) -> bool:
    """Detach a FUSE mount left behind by a killed daemon."""
    if not is_mounted(path):
        return False
    cmd = ["umount", "-l", path] if os.getuid() == 0 else ["fusermount3", "-u", "-z", path]
    subprocess.run(cmd, check=False, capture_output=True)
    return True


def instances() -> list[str]:
    base = base_dir()
    try:
        return sorted(n for n in os.listdir(base) if os.path.isdir(os.path.join(base, n)))
    except FileNotFoundError:
        return []
