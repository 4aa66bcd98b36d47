"""The firmware memory map's persistent-memory entries (arch/x86/kernel/e820.c).

E820 type-12 ranges, or RAM the command line turned into them
(``memmap=nn!ss``), are iomem resources of the kind "persistent memory
(legacy)" from boot.  They belong to the machine, not to a driver: the
nd_e820 driver makes a region of each, ramdax may claim them instead, and
they stay when either unbinds.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fakesys.kernel.kernel import Kernel


@dataclass
class PmemRange:
    """A struct resource of pmem without DIMMs: its SPA range, the nodes
    it belongs to and the byte store behind it (the media).  ``ramdax``
    records that the platform meant the range for the ramdax driver."""

    start: int
    size: int
    numa_node: int
    target_node: int
    store: object
    ramdax: bool = False

    @property
    def end(self) -> int:
        return self.start + self.size - 1


# IORES_DESC_PERSISTENT_MEMORY_LEGACY resources, per kernel, in address order
_LEGACY: "weakref.WeakKeyDictionary[Kernel, list[PmemRange]]" = weakref.WeakKeyDictionary()


def legacy_ranges(kernel: "Kernel") -> list[PmemRange]:
    """walk_iomem_res_desc(IORES_DESC_PERSISTENT_MEMORY_LEGACY, ...)."""
    return sorted(_LEGACY.get(kernel, []), key=lambda r: r.start)


def add_legacy_range(kernel: "Kernel", rng: PmemRange) -> None:
    ranges = _LEGACY.setdefault(kernel, [])
    for other in ranges:
        if rng.start <= other.end and other.start <= rng.end:
            raise ValueError(f"legacy pmem range {rng.start:#x}-{rng.end:#x} overlaps "
                             f"{other.start:#x}-{other.end:#x}")
    ranges.append(rng)
    # the e820 table's type-12 entry, in /proc/iomem from boot
    kernel.iomem.insert("Persistent Memory (legacy)", rng.start, rng.end)
