"""``modprobe nfit_test`` / ``modprobe -r nfit_test`` for a running machine.

The NFITs come from the topology's buses with ``module = "nfit_test"``,
each on the platform device its ``provider`` names (``nfit_test.N`` by
default).  Their memory is the module's: zeroed at every probe, with
"labelN" at the start of each label area (sprintf(t->label[i], "label%d",
i) in the real module), then label pre-provisioning as at boot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from fakesys.kernel.acpi.nfit_table import Nfit
from fakesys.kernel.acpi.nfit_test import MODULE, nfit_test_exit, nfit_test_init
from fakesys.media import Memory
from fakesys.platform.nfit import nfit_table, preprovision_labels
from fakesys.platform.topology import BusSpec, DimmSpec, Topology

if TYPE_CHECKING:
    from fakesys.platform.machine import Machine

__all__ = ["MODULE", "load", "unload"]


def _module_memory(spec: BusSpec) -> Callable[[], Nfit]:
    """The NFIT of ``spec`` over new module memory, each time it is called."""
    index = {d.name: i for i, d in enumerate(spec.dimms)}

    def dimm_stores(dspec: DimmSpec) -> tuple:
        lsa = Memory(dspec.label_size) if dspec.label_size else None
        if lsa is not None:
            lsa.write(0, f"label{index[dspec.name]}".encode() + b"\0")
        return lsa, Memory(dspec.size)

    def make() -> Nfit:
        nfit = nfit_table(spec, dimm_stores, lambda name, size: Memory(size))
        preprovision_labels(spec, nfit)
        return nfit
    return make


def load(machine: "Machine", topology: Topology) -> None:
    """``modprobe nfit_test``: one NFIT per ``nfit`` bus of ``topology``."""
    nfits = {}
    for i, spec in enumerate(b for b in topology.buses if getattr(b, "type", "") == "nfit"):
        nfits[spec.provider or f"{MODULE}.{i}"] = _module_memory(spec)
    nfit_test_init(machine.kernel, nfits)


def unload(machine: "Machine") -> None:
    """``modprobe -r nfit_test``; Errno EBUSY while one of its regions is enabled."""
    nfit_test_exit(machine.kernel)
