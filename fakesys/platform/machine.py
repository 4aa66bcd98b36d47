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

from fakesys.kernel.acpi.nfit import nfit_register
from fakesys.kernel.base import devtmpfs
from fakesys.kernel.boot import boot
from fakesys.media import FileStore, Memory
from fakesys.platform.topology import DimmSpec, Topology


class Machine:
    def __init__(self, topology: Topology, state_dir: str | None = None) -> None:
        self.topology = topology
        self.state_dir = state_dir
        if state_dir:
            os.makedirs(state_dir, exist_ok=True)
        self.stores: list = []
        self.ram_stores: list = []     # contents lost when power goes (cold reboot)
        from fakesys.platform.topology import default_machine
        machine = topology.sections.get("machine") or default_machine(topology)
        self.kernel = boot(topology.kernel, machine)
        devtmpfs.setup(self.kernel)
        for bus in topology.buses:
            PROVIDERS[bus.type](self, bus)
        for name, spec in topology.sections.items():
            if name in SECTION_PROVIDERS and name != "machine":  # the machine boots first
                SECTION_PROVIDERS[name](self, spec)

    def _store(self, name: str, size: int):
        if self.state_dir:
            store = FileStore(state_path(self.state_dir, name), size)
        else:
            store = Memory(size)
        self.stores.append(store)
        return store

    def _dimm_stores(self, spec: DimmSpec):
        lsa = self._store(f"{spec.name}.labels", spec.label_size) if spec.label_size else None
        if lsa is not None:
            lsa.durable = True   # label writes reach the file in order (media.FileStore)
        media = self._store(f"{spec.name}.media", spec.size)
        return lsa, media

    def store(self, name: str, size: int, ram: bool = False):
        """A byte store for media, kept in the state directory; ``ram``: the
        range is RAM, whose contents a cold reboot loses."""
        store = self._store(name, size)
        if ram:
            self.ram_stores.append(store)
        return store

    @property
    def tree(self):
        return self.kernel.tree

    def flush(self) -> None:
        for store in self.stores:
            store.flush()

    def power_off(self, cold: bool) -> None:
        """Shut down for a reboot: persistent media are flushed; RAM keeps
        its contents across a warm reboot (kexec) and loses them across a
        cold one.  The machine is not used afterwards."""
        if cold:
            for store in self.ram_stores:
                store.zero()
        self.flush()


def state_path(state_dir: str, name: str) -> str:
    """The file for store ``name`` (from a topology: DIMM names, ranges) in the
    state directory; a name that would lead anywhere else is refused."""
    if not name or "/" in name or "\0" in name or name in (".", ".."):
        raise ValueError(f"bad media name {name!r}: it must be a plain file name")
    return os.path.join(state_dir, name)


def _e820(machine: Machine, spec) -> None:
    from fakesys.kernel.nvdimm.e820 import e820_register
    e820_register(machine, spec)


def _virtio_pmem(machine: Machine, spec) -> None:
    from fakesys.kernel.nvdimm.virtio_pmem import virtio_pmem_register
    virtio_pmem_register(machine, spec)


def _of_pmem(machine: Machine, spec) -> None:
    from fakesys.kernel.nvdimm.of_pmem import of_pmem_register
    of_pmem_register(machine, spec)


# Bus providers by topology ``type``: each gets the machine and its bus spec.
PROVIDERS = {
    # a bus of a module (nfit_test) comes with "modprobe MODULE", not at boot
    "nfit": lambda machine, spec: None if spec.module else nfit_register(machine.kernel, spec, machine._dimm_stores),
    "e820": _e820,
    "virtio-pmem": _virtio_pmem,
    "of_pmem": _of_pmem,
}


def _soft_reserved(machine: Machine, ranges) -> None:
    from fakesys.kernel.dax.hmem import hmem_init
    hmem_init(machine.kernel, ranges)


# Providers of other top-level tables (parsed by topology.SECTION_PARSERS),
# registered after the buses, in file order.
SECTION_PROVIDERS = {
    "soft_reserved": _soft_reserved,
}
