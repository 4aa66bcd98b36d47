"""The daemon's side of things the model does on its own: delayed work and modules.

* :func:`run_timers` runs the model's due work (kernel/base/timer.py: an
  ARS finishing, a scrub moving on) on the trio thread, then lets the
  FUSE server revalidate what the kernel may have cached and wake pollers
  (``ndctl wait-scrub`` polls ``nfit/scrub``).
* :func:`modprobe` answers the control command ``modprobe [-r] NAME...``
  that the ``modprobe`` on PATH inside ``fakesys run`` sends
  (fakesys/data/bin/modprobe): ``nfit_test`` is loaded from the running
  topology's ``module = "nfit_test"`` buses, or from devices/nfit_test.toml;
  every other name behaves as a built-in module (nothing to do).
"""

from __future__ import annotations

import errno
import logging
import os

import trio

from fakesys.errors import Errno
from fakesys.kernel.base.timer import timers

log = logging.getLogger("fakesys.dev")

NFIT_TEST_TOPOLOGY = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "devices", "nfit_test.toml")


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


def modprobe(machine, words: list[str]) -> tuple[int, str]:
    """``modprobe [-r] [-q] NAME...``: (exit status, message for stderr)."""
    from fakesys.platform import nfit_test
    remove = any(w in ("-r", "--remove") for w in words)
    names = [w for w in words if not w.startswith("-")]
    if not names:
        return 1, "modprobe: ERROR: missing module name.\n"
    for name in names if not remove else names[:1]:
        mod = name.replace("-", "_")
        if mod != nfit_test.MODULE:
            continue                                    # built in: nothing to load or remove
        try:
            if remove:
                nfit_test.unload(machine)
            else:
                nfit_test.load(machine, _nfit_test_topology(machine))
        except Errno as e:
            if e.errno == errno.EBUSY:
                return 1, f"modprobe: FATAL: Module {mod} is in use.\n"
            return 1, f"modprobe: ERROR: could not insert '{mod}': {os.strerror(e.errno)}\n"
    return 0, ""


def _nfit_test_topology(machine):
    from fakesys.platform import nfit_test
    from fakesys.platform.topology import load
    topo = machine.topology
    if any(getattr(b, "module", "") == nfit_test.MODULE for b in topo.buses):
        return _only_module(topo, nfit_test.MODULE)
    return _only_module(load(NFIT_TEST_TOPOLOGY), nfit_test.MODULE)


def _only_module(topo, module: str):
    import copy
    out = copy.copy(topo)
    out.buses = [b for b in topo.buses if getattr(b, "module", "") == module]
    return out
