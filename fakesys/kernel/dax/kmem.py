"""``kmem`` (drivers/dax/kmem.c): a dax device's memory as System RAM.

Probe (dev_dax_kmem_probe):

1. a device without a target node is refused (EINVAL);
2. each range is trimmed inward to memory-block boundaries; ranges left
   without a whole block are skipped, and a device with none left is
   refused (EINVAL);
3. the target node must be possible (memory_group_register_static: EINVAL)
   and gets kmem's memory type unless it has one (memory tiers: fixed on
   6.1, from the HMAT's performance on 6.7+);
4. per range: ``request_mem_region(daxR.N)``, retyped as System RAM so
   that ``add_memory_driver_managed()`` can put ``System RAM (kmem)``
   inside it; the memory comes as offline blocks on the target node (the
   node comes online if it was not) and is onlined at once when
   ``auto_online_blocks`` says so.  A range that cannot be reserved is
   EBUSY if it is the first, skipped once some memory is added.

Remove (dev_dax_kmem_remove) always succeeds, as the driver core wants:
each range whose blocks are all offline goes (blocks, node if it empties,
``System RAM (kmem)``, ``daxR.N``); a range with a block online cannot be
hot-removed and stays, memory and resources, until reboot.  Its
``daxR.N`` keeps holding the range, so binding kmem or device_dax to the
device again fails with EBUSY.  The memory type is dropped only when
every range went.

Before 6.3 kmem matches only the names written to its ``new_id``; from
6.3 it also matches every device of a KMEM region (hmem, CXL).
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass

from fakesys.errors import Errno
from fakesys.kernel.base.core import Device
from fakesys.kernel.base.driver import module_driver
from fakesys.kernel.dax.bus import DaxDriver, DevDax
from fakesys.kernel.mm.memory_tiers import MEMTIER_DEFAULT_DAX_ADISTANCE
from fakesys.kernel.resource import IORESOURCE_SYSTEM_RAM, Resource

log = logging.getLogger("fakesys.kernel")

KMEM_NAME = "System RAM (kmem)"


def kmem_ranges(dev: DevDax, block: int) -> list[tuple[int, int]]:
    """dax_kmem_range() per range: (start, size) trimmed inward to whole blocks;
    ranges without a whole block are skipped."""
    out = []
    for rng in dev.ranges:
        start = -(-rng.start // block) * block
        end = (rng.end + 1) // block * block
        if end > start:
            out.append((start, end - start))
    return out


@dataclass
class KmemRange:
    start: int
    size: int
    res: Resource


@module_driver
class KmemDriver(DaxDriver):
    name = "kmem"
    kmem_type = True

    def probe(self, dev: Device) -> None:
        assert isinstance(dev, DevDax)
        kernel = self.kernel
        nid = dev.target_node
        if nid < 0:
            raise Errno(errno.EINVAL, f"{dev.name}: rejecting DAX region with invalid node {nid}")
        memory = kernel.memory
        ranges = kmem_ranges(dev, memory.block_size)
        if not ranges:
            raise Errno(errno.EINVAL, f"{dev.name}: rejecting DAX region without any memory after alignment")
        if nid not in kernel.nodes.possible:
            raise Errno(errno.EINVAL, f"{dev.name}: node {nid} is not possible")
        tiers = kernel.memory_tiers
        adist = tiers.calc_adistance(nid, MEMTIER_DEFAULT_DAX_ADISTANCE)
        tiers.init_node_memory_type(nid, adist)
        added: list[KmemRange] = []
        for start, size in ranges:
            res = kernel.iomem.request_region(start, size, dev.name)
            if res is None:
                log.warning("%s: %#x-%#x could not reserve region", dev.name, start, start + size - 1)
                if added:
                    continue
                tiers.clear_node_memory_type(nid, adist)
                raise Errno(errno.EBUSY, f"{dev.name}: {start:#x}+{size:#x} could not reserve region")
            res.flags = IORESOURCE_SYSTEM_RAM   # not BUSY: add_memory() nests System RAM in it
            try:
                memory.add_memory(nid, start, size, KMEM_NAME)
            except Errno:
                kernel.iomem.remove(res)
                if added:
                    continue
                tiers.clear_node_memory_type(nid, adist)
                raise
            added.append(KmemRange(start, size, res))
        dev.kmem = added          # type: ignore[attr-defined]
        dev.kmem_adist = adist    # type: ignore[attr-defined]

    def remove(self, dev: Device) -> None:
        assert isinstance(dev, DevDax)
        kernel = self.kernel
        ranges: list[KmemRange] = getattr(dev, "kmem", [])
        kept = []
        for r in ranges:
            try:
                kernel.memory.remove_memory(r.start, r.size)
            except Errno:
                log.error("%s: %#x-%#x cannot be hotremoved until the next reboot",
                          dev.name, r.start, r.start + r.size - 1)
                kept.append(r)
                continue
            kernel.iomem.remove(r.res)
        if not kept and ranges:
            kernel.memory_tiers.clear_node_memory_type(dev.target_node, getattr(dev, "kmem_adist", 0))
        dev.kmem = []             # type: ignore[attr-defined]

    @staticmethod
    def memory_blocks(dev: DevDax) -> list:
        """The memory blocks kmem added for ``dev``."""
        memory = dev.kernel.memory
        return [b for r in getattr(dev, "kmem", []) for b in memory.blocks_in(r.start, r.size)]
