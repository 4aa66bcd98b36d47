"""How pyfuse3's worker tasks wait for requests: a leaner trio for them.

pyfuse3 looks every trio name it uses up in its module global ``trio``,
which ``pyfuse3.asyncio`` replaces to run on another loop; ``install()``
replaces it the same way, with trio itself except for two things.  Each
FUSE request otherwise cost two trips through trio's scheduler plus a
hand-off between two worker tasks, about 30 of the 45 µs (measured) a
request took, and a tool reading 300 attributes waits for every one:

* the read lock does not hand off.  pyfuse3 keeps a spare worker parked
  on it; trio's fair lock woke that spare at every request, so the two
  swapped roles each time.  Here the reader keeps reading, and the spare
  is woken only when the reader is about to block inside a handler
  (``lend()``, called by the server before it waits for the kernel),
  which is the one case a spare exists for;
* waiting for the next request first polls the FUSE fd and, on a
  machine with a CPU to spare, keeps polling for ``SPIN`` seconds: a
  tool issues its next request within microseconds, and catching it
  here saves the wake-up of an idle CPU (30-40 µs in a VM).  Every
  ``BURST`` requests the wait goes through trio anyway, so other tasks
  and cancellation get their turn.

When the session ends (unmounted from outside), the spare workers parked
on the lock are woken to see it: pyfuse3's main() returns once all its
workers have.
"""

from __future__ import annotations

import os
import select
import time
import types
from typing import Callable

import trio

SPIN = 100e-6      # busy-poll this long for the next request (multi-CPU only)
BURST = 64         # requests at most between two real trio checkpoints


class ReadLock:
    """pyfuse3's read lock: held by the worker waiting for a request."""

    def __init__(self) -> None:
        self._held = False
        self._lot = trio.lowlevel.ParkingLot()
        _locks.append(self)

    async def __aenter__(self) -> None:
        if self._held:
            await self._lot.park()  # lend() passed the lock on to us
        else:
            self._held = True

    async def __aexit__(self, *exc: object) -> None:
        self._held = False

    def wake_all(self) -> None:
        """The session is ending: every parked worker goes and sees it."""
        self._lot.unpark_all()

    def lend(self) -> None:
        """Let a parked worker read while the caller blocks in a handler."""
        if not self._held and self._lot:
            self._held = True
            self._lot.unpark()


class _Waiter:
    """wait_readable() with a fast path for a request that is already there."""

    def __init__(self, spin: float, fd: int | None,
                 ended: Callable[[int], bool]) -> None:
        self.spin = spin
        self.fd = fd  # waited on instead of the FUSE fd (the front's)
        self.ended = ended  # given the poll events of a ready fd
        self.burst = 0
        self._poll = select.poll()
        self._fds: set[int] = set()

    async def wait_readable(self, fd: int) -> None:
        if self.fd is not None:
            fd = self.fd
        if fd not in self._fds:
            self._poll.register(fd, select.POLLIN)
            self._fds.add(fd)
        if self.burst < BURST:
            self.burst += 1
            if self._ready():
                return
            if self.spin:
                deadline = time.perf_counter() + self.spin
                while time.perf_counter() < deadline:
                    if self._ready():
                        return
        self.burst = 0
        await trio.lowlevel.wait_readable(fd)
        self._ready()

    def _ready(self) -> bool:
        ready = self._poll.poll(0)
        if ready and self.ended(ready[0][1]):
            for lock in _locks:
                lock.wake_all()
        return bool(ready)


_locks: list[ReadLock] = []  # of the current mount (install() resets)


def lend() -> None:
    """Called before a FUSE handler blocks: a parked worker takes over reading."""
    for lock in _locks:
        lock.lend()


def _aborted(events: int) -> bool:
    return bool(events & (select.POLLERR | select.POLLHUP))


def install(pyfuse3: types.ModuleType, fd: int | None = None,
            ended: Callable[[int], bool] = _aborted) -> None:
    """Make pyfuse3's workers use this module's lock and wait: on ``fd``
    instead of the FUSE fd if given (the front's queue), whose ``ended``
    says, from its poll events, that the session is ending."""
    _locks.clear()
    # Behind the front, requests come here rarely and the front's thread
    # spins for them: spinning here too took the CPU it and the tool need
    # (measured: a list 10% slower).
    spin = SPIN if fd is None and len(os.sched_getaffinity(0)) > 1 else 0.0
    waiter = _Waiter(spin, fd, ended)
    lowlevel = types.SimpleNamespace(
        wait_readable=waiter.wait_readable,
        current_task=trio.lowlevel.current_task,
        current_trio_token=trio.lowlevel.current_trio_token,
        notify_closing=trio.lowlevel.notify_closing,
    )
    pyfuse3.trio = types.SimpleNamespace(
        Lock=ReadLock, lowlevel=lowlevel, open_nursery=trio.open_nursery,
        from_thread=trio.from_thread, ClosedResourceError=trio.ClosedResourceError,
    )
