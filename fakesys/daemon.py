"""The fakesys daemon: boots a machine and serves it over FUSE with trio.

One process per fake.  It owns the FUSE mount (``<rundir>/mnt``), a
control socket (``<rundir>/ctl``) that answers ``status`` and ``down``
and takes the seccomp listener of each ``fakesys run`` (``seccomp``, the
fd attached with SCM_RIGHTS; see dev/bridge.py; answered ``off`` when the
daemon runs with ``--no-ioctl``), and a pid file.
SIGTERM and SIGINT unmount, flush the media and exit.  ``reboot warm`` and
``reboot cold`` stop the same way, except that a cold one zeroes the RAM
the machine has (Machine.power_off); ``fakesys reboot`` then boots anew.
"""

from __future__ import annotations

import argparse
import array
import json
import logging
import os
import signal
import socket
import sys
from functools import partial

import trio

from fakesys import runtime
from fakesys.dev.bridge import IoctlBridge
from fakesys.dev.kwork import run_timers
from fakesys.dev.daxmedia import DaxMedia
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


async def _control(rundir: str, machine: Machine, cancel: trio.CancelScope, topology_path: str,
                   state: str | None, bridge: IoctlBridge | None = None,
                   power: list[str] | None = None, server: Server | None = None) -> None:
    path = os.path.join(rundir, "ctl")
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
            cmd = data.decode(errors="replace").strip()
            if cmd == "seccomp" and len(fds) == 1:
                if bridge is None:
                    await stream.send_all(b"off\n")
                else:
                    bridge.serve(fds.pop())
                    await stream.send_all(b"ok\n")
            elif cmd == "status":
                reply = {"pid": os.getpid(), "mnt": os.path.join(rundir, "mnt"),
                         "topology": topology_path, "state": state,
                         "kernel": str(machine.kernel.version), "ioctl": bridge is not None,
                         "fuse_front": server.front_counts() if server else None}
                await stream.send_all(json.dumps(reply).encode() + b"\n")
            elif cmd in ("check", "check crash", "snapshot"):
                # the model's invariants / what each attribute shows now (tests, harnesses)
                from fakesys.kernel.invariants import control_reply
                reply = control_reply(cmd, machine.kernel, server)
                await stream.send_all(json.dumps(reply).encode() + b"\n")
            elif cmd.startswith("crash-after ") and cmd.split()[1].isdigit():
                # crash-consistency harness: SIGKILL ourselves after N media writes
                from fakesys.testing.crash import arm
                arm(machine, int(cmd.split()[1]))
                await stream.send_all(b"ok\n")
            elif cmd.startswith("modprobe"):
                from fakesys.dev.kwork import modprobe
                rc, msg = modprobe(machine, cmd.split()[1:])
                if server is not None:
                    await server.changed()
                await stream.send_all(f"{rc} {msg.encode('unicode_escape').decode()}\n".encode())
            elif cmd == "down":
                await stream.send_all(b"ok\n")
                cancel.cancel()
            elif cmd in ("reboot warm", "reboot cold") and power is not None:
                power.append(cmd.split()[1])   # stop like down; `fakesys reboot` boots again
                await stream.send_all(b"ok\n")
                cancel.cancel()
            else:
                await stream.send_all(b"error unknown command\n")
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
                nursery.start_soon(partial(_control, server=server), rundir, machine, cancel, args.topology,
                                   args.state, bridge, power)
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
