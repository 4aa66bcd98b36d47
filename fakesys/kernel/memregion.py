"""lib/memregion.c and the IDA: ids the kernel hands out lowest-free-first."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fakesys.kernel.kernel import Kernel


def ida_alloc(ids: set[int]) -> int:
    """ida_alloc(): the lowest free id, now taken."""
    i = 0
    while i in ids:
        i += 1
    ids.add(i)
    return i


def memregion_alloc(kernel: "Kernel") -> int:
    """memregion_alloc(): one id space for nd regions and hmem/CXL regions
    (regionN and hmem.N never share a number)."""
    return ida_alloc(kernel.memregion_ids)


def memregion_free(kernel: "Kernel", id: int) -> None:
    kernel.memregion_ids.discard(id)
