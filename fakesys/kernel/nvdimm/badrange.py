"""Known media errors (badrange.c) and their badblocks views (block/badblocks.c).

A :class:`Badrange` is a list of poisoned ranges in system physical
addresses.  The kernel keeps one per bus (``nvdimm_bus->badrange``: what
ARS reported and nobody cleared yet); an NFIT firmware keeps its own (what
was injected or is really broken).  ``add`` merges nothing, as
badrange_add() only skips an exact duplicate; ``forget`` trims and splits
entries as badrange_forget() does.

Regions, namespaces and block devices show the part that falls inside
them as 512-byte sectors relative to their own start
(nvdimm_badblocks_populate / __add_badblock_range): the start rounds
down, the end up.  The badblocks list merges overlapping and adjacent
sectors and holds at most BB_MAX_LEN (512) sectors per entry, one
"sector count" line each.
"""

from __future__ import annotations

from fakesys.kernel.sizes import SECTOR_SIZE

BB_MAX_LEN = 512


class Badrange:
    """struct badrange: (start, length) entries in insertion order."""

    def __init__(self, entries=()) -> None:
        self.entries: list[tuple[int, int]] = []
        for start, length in entries:
            self.add(start, length)

    def __iter__(self):
        return iter(list(self.entries))

    def __len__(self) -> int:
        return len(self.entries)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def add(self, start: int, length: int) -> None:
        """badrange_add(): append unless the very same range is listed."""
        if length <= 0:
            return
        if (start, length) not in self.entries:
            self.entries.append((start, length))

    def forget(self, start: int, length: int) -> None:
        """badrange_forget(): remove [start, start+length) from every entry."""
        if length <= 0:
            return
        end = start + length
        out: list[tuple[int, int]] = []
        for s, n in self.entries:
            e = s + n
            if e <= start or s >= end:
                out.append((s, n))
                continue
            if s < start:
                out.append((s, start - s))
            if e > end:
                out.append((end, e - end))
        self.entries = out

    def overlapping(self, start: int, length: int) -> list[tuple[int, int]]:
        """The parts of the entries inside [start, start+length), clipped."""
        end = start + length
        out = []
        for s, n in self.entries:
            a, b = max(s, start), min(s + n, end)
            if a < b:
                out.append((a, b - a))
        return out

    def clear(self) -> None:
        self.entries = []


def sectors(ranges, start: int, size: int) -> list[tuple[int, int]]:
    """Badblocks entries (first sector, count) of ``ranges`` within [start, start+size)."""
    spans = []
    for s, n in ranges:
        a, b = max(s, start), min(s + n, start + size)
        if a < b:
            first = (a - start) // SECTOR_SIZE
            last = -(-(b - start) // SECTOR_SIZE)
            spans.append((first, last))
    spans.sort()
    merged: list[list[int]] = []
    for first, last in spans:
        if merged and first <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    out = []
    for first, last in merged:
        while first < last:
            n = min(BB_MAX_LEN, last - first)
            out.append((first, n))
            first += n
    return out


def bus_badrange(bus) -> Badrange:
    """The bus's list of known poison."""
    return bus.badrange


def badblocks_show(bus, start: int, size: int) -> str:
    return "".join(f"{s} {n}\n" for s, n in sectors(bus_badrange(bus), start, size))
