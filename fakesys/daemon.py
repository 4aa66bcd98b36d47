"""The fakesys daemon: boots a machine and serves it over FUSE with trio.

One process per fake.  It owns the FUSE mount (``<rundir>/mnt``), a
control socket (``<rundir>/ctl``) and a pid file.  The control socket takes
one line per connection, a verb and its words, answered by the handler in
:data:`VERBS` (``status``, ``down``, ``reboot``, ``modprobe``, the
read-only ``check`` and ``snapshot``, and ``seccomp``: the seccomp listener
of each ``fakesys run``, the fd attached with SCM_RIGHTS, see
dev/bridge.py; answered ``off`` when the daemon runs with ``--no-ioctl``).
Verbs that change the daemon for a test, such as ``crash-after N``, are
not the product's: a daemon started with ``--harness MODULE`` (``fakesys
up --harness harness.crash``) also answers that module's
``CONTROL_VERBS``; any other daemon answers them like an unknown verb.
SIGTERM and SIGINT unmount, flush the media and exit.  ``reboot warm`` and
``reboot cold`` stop the same way, except that a cold one zeroes the RAM
the machine has (Machine.power_off); ``fakesys reboot`` then boots anew.
"""

from __future__ import annotations

import argparse
import array
import importlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from fakesys import runtime
from fakesys.dev.bridge import IoctlBridge
from fakesys.dev.workqueue import run_timers
from fakesys.dev.daxmedia import DaxMedia
from fakesys.dev.modprobe import modprobe
from fakesys.dev.opentrap import DaxOpens
from fakesys.fuse.server import Server, mount_options, serve
from fakesys.platform.machine import Machine
from fakesys.udev import Udev
from fakesys.platform.topology import load

log = logging.getLogger("fakesys.daemon")


async def _receive(sock, fds: list[int]) -> bytes:
    """Some bytes of a control request, collecting any fds passed along (SCM_RIGHTS)."""
    anc_size = socket.CMSG_SPACE(4 * array.array("i").itemsize)
    data, ancdata, _flags, _addr = await sock.recvmsg(4096, anc_size)
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            got = array.array("i")
            got.frombytes(payload[:len(payload) - len(payload) % got.itemsize])
            fds.extend(got)
    return data


@dataclass
class Control:
    """What the control verbs act on: this daemon's machine and services."""
    rundir: str
    machine: Machine
    cancel: trio.CancelScope        # cancelled to stop the daemon (down, reboot)
    topology_path: str
    state: str | None
    bridge: IoctlBridge | None      # None with --no-ioctl
    power: list[str]                # "warm" or "cold" once a reboot was asked for
    server: Server | None
    harness: str | None             # the --harness module, if any


@dataclass
class Request:
    """One control request: the words after the verb and the fds passed along.

    A handler answers with :meth:`reply` and returns True, or returns False
    for arguments it does not take, which is answered like an unknown verb.
    An fd a handler keeps must be popped from ``fds``; the rest are closed.
    """
    args: list[str]
    fds: list[int]
    stream: trio.SocketStream

    async def reply(self, text: str) -> None:
        await self.stream.send_all(text.encode() + b"\n")


Verb = Callable[[Control, Request], Awaitable[bool]]


async def _seccomp(ctl: Control, req: Request) -> bool:
    """Take a ``fakesys run``'s seccomp listener (one fd) and serve its ioctls;
    ``off`` when the daemon serves none (--no-ioctl)."""
    if req.args or len(req.fds) != 1:
        return False
    if ctl.bridge is None:
        await req.reply("off")
    else:
        ctl.bridge.serve(req.fds.pop())
        await req.reply("ok")
    return True


async def _status(ctl: Control, req: Request) -> bool:
    """What ``fakesys status`` prints and ``reboot`` needs to boot the same fake again."""
    if req.args:
        return False
    server = ctl.server
    reply = {"pid": os.getpid(), "mnt": os.path.join(ctl.rundir, "mnt"),
             "topology": ctl.topology_path, "state": ctl.state,
             "kernel": str(ctl.machine.kernel.version), "ioctl": ctl.bridge is not None,
             "fuse_front": server.front_counts() if server else None, "harness": ctl.harness}
    await req.reply(json.dumps(reply))
    return True


async def _diagnose(ctl: Control, req: Request, cmd: str) -> None:
    """The model's invariants or what each attribute shows now (kernel/invariants.py)."""
    # imported on first use: some 7 ms of every daemon start (and so of
    # `fakesys up`) for a module only tests and harnesses ask for
    from fakesys.kernel.invariants import control_reply
    reply = control_reply(cmd, ctl.machine.kernel, ctl.server)
    await req.reply(json.dumps(reply))


async def _check(ctl: Control, req: Request) -> bool:
    """``check`` / ``check crash``: invariant violations.  Read-only, so a
    normal fake answers it too (tests check the model of any fake)."""
    if req.args not in ([], ["crash"]):
        return False
    await _diagnose(ctl, req, " ".join(["check", *req.args]))
    return True


async def _snapshot(ctl: Control, req: Request) -> bool:
    """``snapshot``: every attribute's contents.  Read-only, like ``check``."""
    if req.args:
        return False
    await _diagnose(ctl, req, "snapshot")
    return True


async def _modprobe(ctl: Control, req: Request) -> bool:
    """``modprobe ARGS`` from the sandbox's modprobe, answered as kmod would (dev/modprobe.py)."""
    rc, msg = modprobe(ctl.machine, req.args)
    if ctl.server is not None:
        await ctl.server.changed()
    await req.reply(f"{rc} {msg.encode('unicode_escape').decode()}")
    return True


async def _down(ctl: Control, req: Request) -> bool:
    """Stop: unmount, flush the media, exit (answered before stopping)."""
    if req.args:
        return False
    await req.reply("ok")
    ctl.cancel.cancel()
    return True


async def _reboot(ctl: Control, req: Request) -> bool:
    """``reboot warm|cold``: stop like down; ``fakesys reboot`` boots again
    (a cold one zeroes the machine's RAM first)."""
    if req.args not in (["warm"], ["cold"]):
        return False
    ctl.power.append(req.args[0])
    await req.reply("ok")
    ctl.cancel.cancel()
    return True


#: the verbs every fake answers
VERBS: dict[str, Verb] = {
    "seccomp": _seccomp,
    "status": _status,
    "check": _check,
    "snapshot": _snapshot,
    "modprobe": _modprobe,
    "down": _down,
    "reboot": _reboot,
}


def verbs(harness: str | None) -> dict[str, Verb]:
    """The verbs this daemon answers: :data:`VERBS`, plus, only when it was
    started for a harness, that module's ``CONTROL_VERBS``.  Those change the
    daemon's behaviour for a test (``crash-after N`` patches media writes to
    kill the daemon), so a normal fake treats them as unknown."""
    table = dict(VERBS)
    if harness:
        table.update(importlib.import_module(harness).CONTROL_VERBS)
    return table


async def _control(ctl: Control, table: dict[str, Verb]) -> None:
    """Answer control requests on ``<rundir>/ctl``, one verb per connection."""
    path = os.path.join(ctl.rundir, "ctl")
    if os.path.exists(path):
        os.unlink(path)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(path)
    os.chmod(path, 0o600)
    sock.listen(16)
    listener = trio.SocketListener(sock)

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            data = b""
            fds: list[int] = []
            while not data.endswith(b"\n"):
                chunk = await _receive(stream.socket, fds)
                if not chunk:
                    break
                data += chunk
            verb, *args = data.decode(errors="replace").split() or [""]
            req = Request(args, fds, stream)
            handler = table.get(verb)
            if handler is None or not await handler(ctl, req):
                await req.reply("error unknown command")
            for fd in fds:
                os.close(fd)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, [listener])


async def _serve(server: Server, mnt: str, options: set[str], cancel: trio.CancelScope,
                 task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve until stopped; a mount gone from outside (umount) stops the daemon."""
    await serve(server, mnt, options, task_status=task_status)
    log.warning("%s was unmounted from outside: stopping", mnt)
    cancel.cancel()


async def _main(args: argparse.Namespace) -> None:
    table = verbs(args.harness)   # before mounting: a --harness that does not import stops here
    topology = load(args.topology)
    machine = Machine(topology, args.state)
    rundir = args.rundir
    mnt = os.path.join(rundir, "mnt")
    os.makedirs(mnt, exist_ok=True)
    runtime.refuse_host_paths(mnt)
    uid, gid = os.getuid(), os.getgid()
    # From here on the nd char devices are ptys (136:N in sysfs), so that ndctl's
    # fstat() check of /dev/nmemN passes; --no-ioctl keeps the kernel's own
    # numbers (245/246 on 6.1) and serves no ioctls.
    # /dev/daxR.N: the bridge also answers the trapped O_RDWR opens of dax
    # nodes with an fd of the device's backing file (dev/opentrap.py)
    dax_media = None if args.no_ioctl else DaxMedia(machine.kernel, args.state)
    bridge = None if args.no_ioctl else IoctlBridge(machine.kernel, opens=DaxOpens(dax_media, mnt))
    server = Server(machine.tree, uid=uid, gid=gid,
                    requester=lambda pid: setattr(machine.kernel, "current_pid", pid))
    power: list[str] = []  # "warm" or "cold" once a reboot was asked for
    with trio.CancelScope() as cancel:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                await nursery.start(_serve, server, mnt, mount_options(f"fakesys-{args.name}"),
                                    cancel)
                ctl = Control(rundir=rundir, machine=machine, cancel=cancel, topology_path=args.topology,
                              state=args.state, bridge=bridge, power=power, server=server,
                              harness=args.harness)
                nursery.start_soon(_control, ctl, table)
                nursery.start_soon(run_timers, machine.kernel, server)
                Udev(machine.kernel, nursery, server.changed)
                if bridge is not None:
                    bridge.after_change = server.changed
                with open(os.path.join(rundir, "pid"), "w") as f:
                    f.write(f"{os.getpid()}\n")
                log.info("serving %s on %s", args.topology, mnt)
                async for _ in signals:
                    cancel.cancel()
                    break
    if bridge is not None:
        bridge.close()
    if dax_media is not None:
        dax_media.close()
    if power:
        machine.power_off(cold=power == ["cold"])
    else:
        machine.flush()
    for name in ("pid", "ctl"):
        try:
            os.unlink(os.path.join(rundir, name))
        except FileNotFoundError:
            pass
    log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fakesys-daemon")
    parser.add_argument("--topology", required=True)
    parser.add_argument("--state")
    parser.add_argument("--rundir", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--log")
    parser.add_argument("--no-ioctl", action="store_true")
    parser.add_argument("--harness", metavar="MODULE",
                        help="started for a test harness: also answer MODULE's CONTROL_VERBS"
                             " (e.g. harness.crash's crash-after N); off by default")
    args = parser.parse_args(argv)
    logging.basicConfig(filename=args.log, level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        trio.run(_main, args)
    except Exception:
        log.exception("daemon failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
