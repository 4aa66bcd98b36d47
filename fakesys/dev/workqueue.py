"""The daemon's delayed work: timers the model arms run on the trio thread.

:func:`run_timers` runs the model's due work (kernel/base/timer.py: an ARS
finishing, a scrub moving on), then lets the FUSE server revalidate what the
kernel may have cached and wake pollers (``ndctl wait-scrub`` polls
``nfit/scrub``).  Module loading is dev/modprobe.py.
"""

from __future__ import annotations

import logging

import trio

from fakesys.kernel.base.timer import timers

log = logging.getLogger("fakesys.dev")


async def run_timers(kernel, server) -> None:
    """Forever: sleep until the model's next deadline, run what is due, revalidate."""
    t = timers(kernel)
    moved = trio.Event()

    def wake() -> None:
        moved.set()
    t.listeners.append(wake)
    try:
        while True:
            deadline = t.next_deadline()
            delay = None if deadline is None else max(deadline - t.now(), 0.0)
            with trio.move_on_after(3600 if delay is None else delay):
                await moved.wait()
            moved = trio.Event()
            try:
                ran = t.run_due()
            except Exception:
                log.exception("delayed work failed")
                ran = 1
            if ran:
                await server.changed()
    finally:
        t.listeners.remove(wake)
