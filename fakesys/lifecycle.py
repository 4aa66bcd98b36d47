"""A fake's lifecycle: up, run in it, down, reboot, and what state each fake is in.

``fakesys`` (cli.py, argument parsing only) and ``fakesys replay``
(replay.py, which brings a fake up for a recorded session) both drive fakes
through these functions; they share the run directory and control socket
of runtime.py.  Kept free of FUSE and trio imports, like cli.py, so that
``up`` starts fast.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from fakesys import runtime, topology_path

UP_TIMEOUT = 20.0


def up(topology: str | None, state: str | None, name: str, quiet: bool = False,
       ioctl: bool = True, harness: str | None = None) -> str:
    """Start a daemon and return once its mount answers; returns the mount point.

    ``harness`` names a module whose CONTROL_VERBS the daemon answers too
    (daemon.py): only test harnesses pass it."""
    rd = runtime.rundir(name)
    mnt = os.path.join(rd, "mnt")
    if runtime.status(name) is not None:
        raise runtime.RuntimeErrorFakesys(f"fake {name!r} is already up (fakesys down --name {name})")
    os.makedirs(rd, mode=0o700, exist_ok=True)
    if runtime.unmount_stale(mnt):
        print(f"fakesys: cleaned a stale mount at {mnt}", file=sys.stderr)
    for stale in ("pid", "ctl"):  # of a daemon that did not stop cleanly
        try:
            os.unlink(os.path.join(rd, stale))
        except FileNotFoundError:
            pass
    runtime.refuse_host_paths(mnt)
    topo = topology_path(topology)
    log_path = os.path.join(rd, "log")
    cmd = [sys.executable, "-m", "fakesys.daemon", "--topology", topo, "--rundir", rd,
           "--name", name, "--log", log_path]
    if state:
        cmd += ["--state", os.path.abspath(state)]
    if not ioctl:
        cmd.append("--no-ioctl")
    if harness:
        cmd += ["--harness", harness]
    with open(log_path, "a") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, close_fds=True)
    try:
        # Checked while the daemon starts (its imports take most of `up`):
        # a bad topology fails here with a clear message, not a log tail.
        from fakesys.platform.topology import load
        load(topo)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    deadline = time.monotonic() + UP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise runtime.RuntimeErrorFakesys(f"daemon exited with {proc.returncode}; see {log_path}:\n"
                                              + _tail(log_path))
        if (os.path.exists(os.path.join(rd, "pid")) and os.path.isdir(os.path.join(mnt, "sys", "bus"))
                and runtime.status(name) is not None):  # the control socket answers too
            if not quiet:
                print(mnt)
            return mnt
        time.sleep(0.002)
    proc.terminate()
    raise runtime.RuntimeErrorFakesys(f"the mount did not answer within {UP_TIMEOUT:.0f}s; see {log_path}")


def _tail(path: str, lines: int = 20) -> str:
    try:
        with open(path) as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def down(name: str) -> bool:
    """Stop a daemon (control socket, then SIGTERM) and clean a stale mount."""
    rd = runtime.rundir(name)
    mnt = os.path.join(rd, "mnt")
    pid = _pid(rd)
    stopped = False
    try:
        runtime.control(name, "down", timeout=5.0)
        stopped = True
    except OSError:
        if pid is not None:
            try:
                os.kill(pid, signal.SIGTERM)
                stopped = True
            except ProcessLookupError:
                pass
    if pid is not None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and runtime.alive(pid):
            time.sleep(0.01)
    runtime.unmount_stale(mnt)
    return stopped


def _pid(rd: str) -> int | None:
    try:
        with open(os.path.join(rd, "pid")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def run(name: str, argv: list[str]) -> int:
    """Run ``argv`` with fake ``name`` as its /sys and /dev; its exit status
    (125 when no such fake is up)."""
    from fakesys.sandbox.namespace import run as sandbox_run   # only this verb needs it
    mnt = os.path.join(runtime.rundir(name), "mnt")
    st = runtime.status(name)
    if st is None:
        print(f"fakesys: no fake named {name!r} is up (fakesys up)", file=sys.stderr)
        return 125
    return sandbox_run(mnt, argv, trap=st.get("ioctl", True))


def reboot(name: str, cold: bool = False) -> str:
    """Reboot a fake: the daemon stops (a cold reboot zeroes its RAM ranges),
    then the same topology boots again over the same state; returns the
    mount point.  Everything not on media is gone (driver_override, bound
    drivers, namespaces not described by labels or info blocks)."""
    st = runtime.status(name)
    if st is None:
        raise runtime.RuntimeErrorFakesys(f"no fake named {name!r} is up (fakesys up)")
    rd = runtime.rundir(name)
    pid = _pid(rd)
    reply = runtime.control(name, "reboot cold" if cold else "reboot warm", timeout=5.0).strip()
    if reply != "ok":
        raise runtime.RuntimeErrorFakesys(f"the daemon refused to reboot: {reply}")
    deadline = time.monotonic() + 30
    while pid is not None and runtime.alive(pid):
        if time.monotonic() > deadline:
            raise runtime.RuntimeErrorFakesys(f"fake {name!r} did not stop for the reboot")
        time.sleep(0.01)
    runtime.unmount_stale(os.path.join(rd, "mnt"))
    return up(st["topology"], st.get("state"), name, quiet=True, ioctl=st.get("ioctl", True),
              harness=st.get("harness"))


def states() -> list[tuple[str, str, dict | None]]:
    """Every fake with a run directory: (name, "up"|"stale"|"down", its status reply or None)."""
    out = []
    for name in runtime.instances():
        st = runtime.status(name)
        if st is not None:
            out.append((name, "up", st))
        else:
            stale = runtime.is_mounted(os.path.join(runtime.rundir(name), "mnt"))
            out.append((name, "stale" if stale else "down", None))
    return out
