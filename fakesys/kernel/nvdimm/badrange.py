"""Known media errors of a bus (badrange.c) and their badblocks views.

Ranges are in system physical addresses; regions, namespaces and block
devices show the part that falls inside them as 512-byte sectors relative
to their own start, one "sector count" line per range.
"""

from __future__ import annotations

SECTOR = 512


def badblocks_show(bus, start: int, size: int) -> str:
    lines = []
    for addr, length in sorted(getattr(bus, "badrange", [])):
        s, e = max(addr, start), min(addr + length, start + size)
        if s < e:
            first = (s - start) // SECTOR
            last = -(-(e - start) // SECTOR)
            lines.append(f"{first} {last - first}\n")
    return "".join(lines)
