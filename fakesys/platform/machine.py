"""A machine: the emulated kernel booted from a topology, with its media.

``Machine(topology, state_dir)`` creates (or reopens) one sparse file per
DIMM for its DPA space and one for its label area in ``state_dir``, then
boots: buses, DIMMs and regions probe, and namespaces come back from the
labels and info blocks on media exactly as at a real boot.  Without a
state directory the media lives in memory.

A reboot is a new ``Machine`` over the same state directory.  Stores a
provider marked as RAM (memmap= carve-outs, ramdax ranges, volatile
device-tree regions) keep their bytes across a warm reboot and read 0
after a cold one (:meth:`Machine.power_off`); all others are persistent
media (NVDIMMs and their label areas, virtio-pmem's host file).
"""

from __future__ import annotations

import os
from dataclasses import fields

from fakesys.kernel.base import devtmpfs
from fakesys.kernel.boot import boot
from fakesys.kernel.bootparam import BootParams
from fakesys.kernel.dax.hmem import SoftReserved, hmem_init
from fakesys.kernel.kernel import Kernel
from fakesys.platform import pmem
from fakesys.platform.nfit import acpi_nfit
from fakesys.platform.stores import Stores
from fakesys.platform.topology import MachineSpec, SoftReservedSpec, Topology, default_machine


class Machine:
    def __init__(self, topology: Topology, state_dir: str | None = None) -> None:
        self.topology = topology
        self.state_dir = state_dir
        self.media = Stores(state_dir)
        self.stores = self.media.stores
        self.ram_stores = self.media.ram_stores
        machine = topology.sections.get("machine") or default_machine(topology)
        self.kernel = boot(topology.kernel, boot_params(machine))
        devtmpfs.setup(self.kernel)
        for bus in topology.buses:
            PROVIDERS[bus.type](self.kernel, self.media, bus)
        for name, spec in topology.sections.items():
            if name in SECTION_PROVIDERS and name != "machine":  # the machine boots first
                SECTION_PROVIDERS[name](self.kernel, spec)

    def store(self, name: str, size: int, ram: bool = False):
        """A byte store for media (see Stores.store)."""
        return self.media.store(name, size, ram)

    @property
    def tree(self):
        return self.kernel.tree

    def flush(self) -> None:
        self.media.flush()

    def power_off(self, cold: bool) -> None:
        """Shut down for a reboot: persistent media are flushed; RAM keeps
        its contents across a warm reboot (kexec) and loses them across a
        cold one.  The machine is not used afterwards."""
        self.media.power_off(cold)


def boot_params(spec: MachineSpec) -> BootParams:
    """What the firmware tells the kernel of ``spec``'s machine; the ACPI
    tables it names are read from their files."""
    params = BootParams(**{f.name: getattr(spec, f.name) for f in fields(BootParams)
                           if f.name != "acpi_tables"})
    for sig, name in sorted(spec.acpi_tables.items()):
        path = name if os.path.isabs(name) else os.path.join(spec.source_dir, name)
        with open(path, "rb") as f:
            data = f.read()
        if data[:4] != sig.encode():
            raise ValueError(f"{path} is not an ACPI {sig} table")
        params.acpi_tables[sig] = data
    return params


# Bus providers by topology ``type``: each gets the kernel, the machine's
# stores and its bus spec.
PROVIDERS = {
    "nfit": acpi_nfit,
    "e820": pmem.e820,
    "virtio-pmem": pmem.virtio_pmem,
    "of_pmem": pmem.of_pmem,
}


def _soft_reserved(kernel: Kernel, ranges: list[SoftReservedSpec]) -> None:
    """EFI_MEMORY_SP ranges, for dax_hmem."""
    hmem_init(kernel, [SoftReserved(r.start, r.size, r.target_node, r.numa_node) for r in ranges])


# Providers of other top-level tables (parsed by topology.SECTION_PARSERS),
# registered after the buses, in file order.
SECTION_PROVIDERS = {
    "soft_reserved": _soft_reserved,
}
