"""``modprobe`` inside ``fakesys run``: the daemon's module loader.

:func:`modprobe` answers the control command ``modprobe [-r] NAME...`` that
the ``modprobe`` on PATH inside ``fakesys run`` sends
(fakesys/data/bin/modprobe): ``nfit_test`` is loaded from the running
topology's ``module = "nfit_test"`` buses, or from the shipped nfit_test
topology; every other name behaves as a built-in module (nothing to do).
"""

from __future__ import annotations

import copy
import errno
import os

from fakesys import shipped_topology
from fakesys.errors import Errno
from fakesys.platform import nfit_test
from fakesys.platform.topology import Topology, load

#: the machine ``modprobe nfit_test`` adds when the running topology names none
NFIT_TEST_TOPOLOGY = shipped_topology("nfit_test")


def modprobe(machine, words: list[str]) -> tuple[int, str]:
    """``modprobe [-r] [-q] NAME...``: (exit status, message for stderr)."""
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


def _nfit_test_topology(machine) -> Topology:
    """The nfit_test buses to load: the running topology's, else the shipped ones."""
    topo = machine.topology
    if any(getattr(b, "module", "") == nfit_test.MODULE for b in topo.buses):
        return _only_module(topo, nfit_test.MODULE)
    return _only_module(load(NFIT_TEST_TOPOLOGY), nfit_test.MODULE)


def _only_module(topo: Topology, module: str) -> Topology:
    """A copy of ``topo`` holding only the buses ``module`` provides."""
    out = copy.copy(topo)
    out.buses = [b for b in topo.buses if getattr(b, "module", "") == module]
    return out
