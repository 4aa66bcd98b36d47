"""The fakesys daemon: boots a machine and serves it over FUSE with trio.

One process per fake.  It owns the FUSE mount (``<rundir>/mnt``), a
control socket (``<rundir>/ctl``) that answers ``status`` and ``down``,
and a pid file.  SIGTERM and SIGINT unmount, flush the media and exit.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

import trio

from fakesys import runtime
from fakesys.fuse.server import Server, mount_options, serve
from fakesys.machine import Machine
from fakesys.topology import load

log = logging.getLogger("fakesys.daemon")


async def _control(rundir: str, machine: Machine, cancel: trio.CancelScope, topology_path: str,
                   state: str | None) -> None:
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
            while not data.endswith(b"\n"):
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                data += chunk
            cmd = data.decode(errors="replace").strip()
            if cmd == "status":
                reply = {"pid": os.getpid(), "mnt": os.path.join(rundir, "mnt"),
                         "topology": topology_path, "state": state,
                         "kernel": str(machine.kernel.version)}
                await stream.send_all(json.dumps(reply).encode() + b"\n")
            elif cmd == "down":
                await stream.send_all(b"ok\n")
                cancel.cancel()
            else:
                await stream.send_all(b"error unknown command\n")

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, [listener])


async def _main(args: argparse.Namespace) -> None:
    topology = load(args.topology)
    machine = Machine(topology, args.state)
    rundir = args.rundir
    mnt = os.path.join(rundir, "mnt")
    os.makedirs(mnt, exist_ok=True)
    runtime.refuse_host_paths(mnt)
    uid, gid = os.getuid(), os.getgid()
    server = Server(machine.tree, uid=uid, gid=gid)
    with trio.CancelScope() as cancel:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                await nursery.start(serve, server, mnt, mount_options(f"fakesys-{args.name}"))
                nursery.start_soon(_control, rundir, machine, cancel, args.topology, args.state)
                with open(os.path.join(rundir, "pid"), "w") as f:
                    f.write(f"{os.getpid()}\n")
                log.info("serving %s on %s", args.topology, mnt)
                async for _ in signals:
                    cancel.cancel()
                    break
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
