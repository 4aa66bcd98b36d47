"""The dax core's invariants (see kernel/invariants.py).

Allocations inside the region, sorted, disjoint, owned by registered
devices whose ranges they are; ``available_size`` is the size minus them;
every range of a registered device has its ``mappingN`` and consecutive
page offsets; a dynamic region's seed is registered and unbound.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fakesys.errors import Errno
from fakesys.kernel.sizes import PAGE_SIZE
from fakesys.sysfs.tree import File

if TYPE_CHECKING:
    from fakesys.kernel.kernel import Kernel


def dax_regions(kernel: "Kernel"):
    """Every dax region, once, found through the devices that host them."""
    seen = set()
    for bus in kernel.buses.values():
        for dev in bus.devices.values():
            region = getattr(dev, "dax_region", None)
            if region is not None and id(region) not in seen and getattr(region, "host", None) is dev:
                seen.add(id(region))
                yield region


def check(kernel: "Kernel", after_crash: bool = False) -> list[str]:
    if kernel.dax is None:
        return []
    out: list[str] = []
    for region in dax_regions(kernel):
        name = f"dax region {region.id}"
        res = list(region.res)
        if res != sorted(res, key=lambda a: a.start):
            out.append(f"{name}: allocations are not sorted")
        for a in res:
            if a.start < region.start or a.end > region.end or a.end < a.start:
                out.append(f"{name}: allocation [{a.start:#x},{a.end:#x}] outside the region")
            if a.owner not in region.devices or not a.owner.registered:
                out.append(f"{name}: allocation [{a.start:#x},{a.end:#x}] of {a.owner.name} "
                           f"which is not a registered device of the region")
        spans = sorted((a.start, a.end) for a in res)
        for (s1, e1), (s2, e2) in zip(spans, spans[1:]):
            if s2 <= e1:
                out.append(f"{name}: allocations [{s1:#x},{e1:#x}] and [{s2:#x},{e2:#x}] overlap")
        allocated = sum(a.end - a.start + 1 for a in res)
        shown = None
        node = region.host.kobj.walk("dax_region/available_size") if region.host.kobj else None
        if isinstance(node, File):
            try:
                shown = node.read().decode()
            except Errno:
                shown = None
        if shown is not None and shown != f"{region.size - allocated}\n":
            out.append(f"{name}: available_size shows {shown.strip()}, size {region.size} "
                       f"minus allocations {allocated} is {region.size - allocated}")
        for dev in region.devices:
            mine = sorted((a.start, a.end) for a in res if a.owner is dev)
            ranges = sorted((r.start, r.end) for r in dev.ranges)
            if mine != ranges:
                out.append(f"{dev.name}: ranges {ranges} are not its allocations {mine}")
            if dev.registered:
                for r in dev.ranges:
                    if r.mapping is None or not r.mapping.registered:
                        out.append(f"{dev.name}: range [{r.start:#x},{r.end:#x}] has no mapping device")
            pg = 0
            for r in sorted(dev.ranges, key=lambda r: r.pgoff):
                if r.pgoff != pg:
                    out.append(f"{dev.name}: range at {r.start:#x} has page_offset {r.pgoff:#x}, expected {pg:#x}")
                pg += (r.end - r.start + 1) // PAGE_SIZE
        seed = getattr(region, "seed", None)
        if seed is not None and not region.static:
            if not seed.registered:
                out.append(f"{name}: seed {seed.name} is not registered")
            elif seed.driver is not None:
                out.append(f"{name}: seed {seed.name} is bound to {seed.driver.name}")
    return out
