"""The ``fakesys`` command: up, run, down, reboot, status, dump, replay.

Kept free of FUSE and trio imports so that ``fakesys run`` (called once per
tool invocation by test suites) starts fast.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid

from fakesys import runtime
from fakesys.lifecycle import down, reboot, run, states, up

DEFAULT_NAME = "default"


def cmd_up(args) -> int:
    up(args.topology, args.state, args.name, ioctl=not args.no_ioctl, harness=args.harness)
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
    for name, state, st in states():
        if st is None:
            print(f"{name}\t{state}")
        else:
            found = True
            print(f"{name}\tup\tpid {st['pid']}\tkernel {st['kernel']}\t{st['mnt']}\t{st['topology']}")
    return 0 if found else 3


def cmd_reboot(args) -> int:
    print(reboot(args.name, cold=args.cold))
    return 0


def cmd_dump(args) -> int:
    argv = [sys.executable, "-m", "fakesys.sysdump", "-d", str(args.d)]
    return run(args.name, argv + (["--all"] if args.all or not args.paths else []) + args.paths)


def cmd_replay(args) -> int:
    from fakesys.replay import replay   # only this verb needs it: every other starts faster

    return replay(args.golden, args.topology, verbose=args.verbose)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fakesys", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("up", help="start a fake and mount it")
    p.add_argument("topology", nargs="?", help="a TOML file or a shipped topology's name (nfit_test)")
    p.add_argument("--state", help="directory for media and labels (kept across up/down)")
    p.add_argument("--name", default=DEFAULT_NAME)
    p.add_argument("--no-ioctl", action="store_true",
                   help="serve no nd ioctls; ndctlN/nmemN keep the kernel's char numbers")
    p.add_argument("--harness", metavar="MODULE",
                   help="for test harnesses: the daemon also answers MODULE's control verbs"
                        " (harness.crash: crash-after N); off by default")
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
