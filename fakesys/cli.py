"""The ``fakesys`` command: up, run, down, reboot, status, dump, replay.

Kept free of FUSE and trio imports so that ``fakesys run`` (called once per
tool invocation by test suites) starts fast.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid

from fakesys import DEFAULT_TOPOLOGY, runtime

DEFAULT_NAME = "default"
UP_TIMEOUT = 20.0


def _topology_path(path: str | None) -> str:
    return os.path.abspath(path) if path else DEFAULT_TOPOLOGY


def up(topology: str | None, state: str | None, name: str, quiet: bool = False,
       ioctl: bool = True) -> str:
    """Start a daemon and return once its mount answers; returns the mount point."""
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
    topo = _topology_path(topology)
    log_path = os.path.join(rd, "log")
    cmd = [sys.executable, "-m", "fakesys.daemon", "--topology", topo, "--rundir", rd,
           "--name", name, "--log", log_path]
    if state:
        cmd += ["--state", os.path.abspath(state)]
    if not ioctl:
        cmd.append("--no-ioctl")
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
    from fakesys.sandbox.namespace import run as sandbox_run
    mnt = os.path.join(runtime.rundir(name), "mnt")
    st = runtime.status(name)
    if st is None:
        print(f"fakesys: no fake named {name!r} is up (fakesys up)", file=sys.stderr)
        return 125
    return sandbox_run(mnt, argv, trap=st.get("ioctl", True))


def cmd_up(args) -> int:
    up(args.topology, args.state, args.name, ioctl=not args.no_ioctl)
    return 0


def cmd_run(args) -> int:
    argv = args.command
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        argv = [os.environ.get("SHELL", "/bin/sh")]
    if args.topology:
        name = args.name if args.name != DEFAULT_NAME else f"run-{uuid.uuid4().hex[:8]}"
        up(args.topology, args.state, name, quiet=True)
        try:
            return run(name, argv)
        finally:
            down(name)
            runtime.remove_rundir(name)
    return run(args.name, argv)


def cmd_down(args) -> int:
    if down(args.name):
        runtime.remove_rundir(args.name)  # a daemon that died on its own keeps its log
    else:
        print(f"fakesys: {args.name!r} was not running", file=sys.stderr)
    return 0


def cmd_status(args) -> int:
    found = False
    for name in runtime.instances():
        st = runtime.status(name)
        if st is None:
            state = "stale" if runtime.is_mounted(os.path.join(runtime.rundir(name), "mnt")) else "down"
            print(f"{name}\t{state}")
        else:
            found = True
            print(f"{name}\tup\tpid {st['pid']}\tkernel {st['kernel']}\t{st['mnt']}\t{st['topology']}")
    return 0 if found else 3


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
    return up(st["topology"], st.get("state"), name, quiet=True, ioctl=st.get("ioctl", True))


def cmd_reboot(args) -> int:
    print(reboot(args.name, cold=args.cold))
    return 0


def cmd_dump(args) -> int:
    argv = [sys.executable, "-m", "fakesys.sysdump", "-d", str(args.d)]
    return run(args.name, argv + (["--all"] if args.all or not args.paths else []) + args.paths)


def cmd_replay(args) -> int:
    from fakesys.replay import replay
    return replay(args.golden, args.topology, verbose=args.verbose)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fakesys", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("up", help="start a fake and mount it")
    p.add_argument("topology", nargs="?")
    p.add_argument("--state", help="directory for media and labels (kept across up/down)")
    p.add_argument("--name", default=DEFAULT_NAME)
    p.add_argument("--no-ioctl", action="store_true",
                   help="serve no nd ioctls; ndctlN/nmemN keep the kernel's char numbers")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("run", help="run a command with the fake as /sys and /dev")
    p.add_argument("--name", default=DEFAULT_NAME)
    p.add_argument("--topology", help="bring a fake up for this command only")
    p.add_argument("--state")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("down", help="stop a fake")
    p.add_argument("--name", default=DEFAULT_NAME)
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("status", help="list fakes")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("reboot", help="reboot a fake: RAM ranges survive --warm (the default), not --cold")
    p.add_argument("--name", default=DEFAULT_NAME)
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--warm", dest="cold", action="store_false", help="keep RAM contents (kexec)")
    kind.add_argument("--cold", dest="cold", action="store_true", help="power cycle: RAM reads 0")
    p.set_defaults(func=cmd_reboot, cold=False)

    p = sub.add_parser("dump", help="dump sysfs in the oracle's golden format (default: what sysdump-all covers)")
    p.add_argument("--name", default=DEFAULT_NAME)
    p.add_argument("-d", type=int, default=64, metavar="MAXDEPTH", help="depth limit for PATHS")
    p.add_argument("--all", action="store_true", help="the sysdump-all trees (the default without PATHS)")
    p.add_argument("paths", nargs="*", metavar="PATH")
    p.set_defaults(func=cmd_dump)

    p = sub.add_parser("replay", help="replay a recorded real-kernel session")
    p.add_argument("golden")
    p.add_argument("--topology")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_replay)

    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except runtime.RuntimeErrorFakesys as e:
        print(f"fakesys: {e}", file=sys.stderr)
        rc = 1
    if argv is None:
        _exit(rc)
    return rc


def _exit(rc: int) -> None:
    """End the program without the interpreter's teardown.

    Freeing the modules a verb imported takes 20-25 ms on a slow VM, after
    the verb is done: ``up`` pays it before the caller sees the mount, and
    test suites pay it at every ``fakesys run``.  Nothing is pending at
    this point (no threads, no logging handlers); only the two streams
    need flushing.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:          # a reader that went away; nothing left to tell it
            pass
    os._exit(rc)


if __name__ == "__main__":
    sys.exit(main())
