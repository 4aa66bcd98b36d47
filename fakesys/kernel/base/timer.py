"""Delayed work (kernel/workqueue.c's delayed work, timers) for the model.

The model never sleeps: a driver that would ``queue_delayed_work()``
registers a callback with :func:`timers` and the host of the model runs
what is due.  The daemon does that from a trio task (and revalidates the
served tree afterwards); tests drive a :class:`Timers` with a fake clock
and :meth:`Timers.advance`, so timing-dependent behaviour is
deterministic.  No trio or FUSE here.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Callable


class Timer:
    __slots__ = ("when", "fn", "cancelled")

    def __init__(self, when: float, fn: Callable[[], object]) -> None:
        self.when = when
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Timers:
    """A clock and the work due at points of it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._offset = 0.0
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self.listeners: list[Callable[[], None]] = []   # told when the next deadline moved

    def now(self) -> float:
        return self.clock() + self._offset

    def call_later(self, delay: float, fn: Callable[[], object]) -> Timer:
        t = Timer(self.now() + max(delay, 0.0), fn)
        first = self.next_deadline()
        heapq.heappush(self._heap, (t.when, next(self._seq), t))
        if first is None or t.when < first:
            for cb in self.listeners:
                cb()
        return t

    def next_deadline(self) -> float | None:
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def run_due(self) -> int:
        """Run every callback whose time has come (in deadline order)."""
        ran = 0
        while True:
            when = self.next_deadline()
            if when is None or when > self.now():
                return ran
            _, _, t = heapq.heappop(self._heap)
            t.fn()
            ran += 1

    def advance(self, seconds: float) -> int:
        """For tests: move this clock forward and run what became due."""
        self._offset += seconds
        return self.run_due()

    def settle(self, limit: float = 3600.0) -> float:
        """For tests: jump from deadline to deadline until nothing is pending."""
        start = self.now()
        while True:
            when = self.next_deadline()
            if when is None or when - start > limit:
                return self.now() - start
            if when > self.now():
                self._offset += when - self.now()
            self.run_due()


def timers(kernel) -> Timers:
    """The kernel's timer queue."""
    return kernel.timers
