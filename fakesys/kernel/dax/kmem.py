"""``kmem`` (drivers/dax/kmem.c): a dax device's memory as System RAM.

This is the sysfs half: probe applies the checks the driver makes before
it hot-adds anything (a target node, at least one whole memory block
after trimming each range inward to memory-block boundaries), claims the
trimmed ranges and binds; remove gives them back.  The memory blocks,
nodes and /proc/iomem effects of hot-add and hot-remove are not modelled
here yet.

Before 6.3 kmem matches only the names written to its ``new_id``; from
6.3 it also matches every device of a KMEM region (hmem, CXL).
"""

from __future__ import annotations

import errno

from fakesys.errors import Errno
from fakesys.kernel.base.core import Device
from fakesys.kernel.dax.bus import DaxDriver, DevDax

# memory_block_size_bytes() of the x86-64 guests the goldens come from
MEMORY_BLOCK_SIZE = 128 << 20


def kmem_ranges(dev: DevDax, block: int = MEMORY_BLOCK_SIZE) -> list[tuple[int, int]]:
    """dax_kmem_range() per range: (start, size) trimmed inward to whole blocks;
    ranges without a whole block are skipped."""
    out = []
    for rng in dev.ranges:
        start = -(-rng.start // block) * block
        end = (rng.end + 1) // block * block
        if end > start:
            out.append((start, end - start))
    return out


class KmemDriver(DaxDriver):
    name = "kmem"
    kmem_type = True

    def probe(self, dev: Device) -> None:
        assert isinstance(dev, DevDax)
        if dev.target_node < 0:
            raise Errno(errno.EINVAL, f"{dev.name}: rejecting DAX region with invalid node {dev.target_node}")
        ranges = kmem_ranges(dev)
        if not ranges:
            raise Errno(errno.EINVAL, f"{dev.name}: rejecting DAX region without any memory after alignment")
        dax = self.kernel.dax
        claimed = []
        for start, size in ranges:
            if not dax.request_mem_region(start, size, dev.name):
                if not claimed:
                    raise Errno(errno.EBUSY, f"{dev.name}: {start:#x}+{size:#x} could not reserve region")
                continue  # once some memory is added a busy range is skipped
            claimed.append((start, size))
        dev.claimed = claimed

    def remove(self, dev: Device) -> None:
        assert isinstance(dev, DevDax)
        for start, size in getattr(dev, "claimed", ()):
            self.kernel.dax.release_mem_region(start, size)
        dev.claimed = []
