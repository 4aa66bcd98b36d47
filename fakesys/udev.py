"""The udev stand-in of a daemon: modalias autoload of modules.

On a real machine a new device's ``add`` uevent makes udev run modprobe
for its modalias, a little after the device appeared: the tool that made
the device (ndctl creating a devdax namespace) still sees it unbound, and
the next command finds it bound.  The recorded 6.1 sessions show exactly
that.  Here the module is loaded once the process whose write created the
device has exited (at most a second later), which reproduces the ordering
deterministically: nothing depends on how fast the tool runs.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

import trio

from fakesys import runtime
from fakesys.kernel.kernel import Kernel

log = logging.getLogger("fakesys.udev")

MAX_WAIT = 1.0


class Udev:
    def __init__(self, kernel: Kernel, nursery: trio.Nursery,
                 changed: Callable[[], Awaitable[None]]) -> None:
        self.nursery = nursery
        self.changed = changed
        kernel.udev = self.request

    def request(self, alias: str, load: Callable[[], None], pid: int) -> None:
        self.nursery.start_soon(self._load, alias, load, pid)

    async def _load(self, alias: str, load: Callable[[], None], pid: int) -> None:
        with trio.move_on_after(MAX_WAIT):
            while pid and runtime.alive(pid):
                await trio.sleep(0.002)
        log.debug("modprobe for %s", alias)
        load()
        await self.changed()
