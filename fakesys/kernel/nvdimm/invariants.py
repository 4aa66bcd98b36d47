"""libnvdimm's invariants, recomputed from first principles (see kernel/invariants.py).

* DPA: no two allocations overlap on a DIMM, each lies inside the DIMM,
  and (enabled regions) every allocation belongs to a namespace shown;
* regions: the pmem namespaces of a region lie inside it and do not
  overlap; ``available_size`` is what nd_pmem_available_dpa() computes
  (busy extents widened to align/N, the rest rounded down per mapping), and
  namespace capacity plus that never exceeds the size; a disabled region
  has no child devices;
* labels: both index blocks parse with valid checksums and consecutive
  sequence numbers (or neither does: a blank area); every slot the current
  index uses holds a valid label (slot number, 4 KiB aligned DPA/size,
  checksum for v1.2), no uuid has two labels on one DIMM, no label is left
  flagged UPDATING, and the labels of an enabled label-backed region agree
  with the namespaces shown (uuid, DPA, size, name, position, cookie) in
  both directions;
* seeds: every enabled region has its namespace/btt/pfn/dax seeds,
  registered, children of the region and not bound to a driver.

After a crash, what an interrupted label update leaves is tolerated, as
the kernel tolerates it: one torn index block (the other is current),
labels still flagged UPDATING, the labels of a namespace that reached only
some DIMMs of an interleave set (the kernel creates no namespace for them
but keeps their DPA reserved), and a name or lbasize that an update
changed on some DIMMs only (the kernel takes them from the label at
position 0).
"""

from __future__ import annotations

import hashlib
import struct
from typing import TYPE_CHECKING

from fakesys.errors import Errno
from fakesys.kernel.nvdimm.bus import ND_DEVICE_NAMESPACE_PMEM, NvdimmBus
from fakesys.kernel.nvdimm.dimm import LsaIo, label_id
from fakesys.kernel.nvdimm.label import (
    NSINDEX_SEQ_MASK, NSLABEL_FLAG_UPDATING, LabelArea, _label_checksum_ok, decode_label,
    nd_inc_seq,
)
from fakesys.kernel.nvdimm.namespace import NamespacePmem
from fakesys.kernel.sizes import PAGE_SIZE
from fakesys.media import Memory
from fakesys.sysfs.tree import File

if TYPE_CHECKING:
    from fakesys.kernel.kernel import Kernel


def check(kernel: "Kernel", after_crash: bool = False) -> list[str]:
    """Every nd bus: its DIMMs' DPA and label areas, its regions."""
    if kernel.nd is None:
        return []
    out: list[str] = []
    for bus in list(kernel.nd.bus.devices.values()):
        out += _check_nd_bus(bus, after_crash)
    return out


def snapshot(kernel: "Kernel") -> dict[str, object]:
    """The label areas' digests: what a rejected write must not change
    besides what sysfs shows."""
    out: dict[str, object] = {}
    if kernel.nd is None:
        return out
    for bus in kernel.nd.bus.devices.values():
        if isinstance(bus, NvdimmBus):
            for dimm in bus.nvdimms():
                if dimm.lsa is not None and dimm.lsa.size:
                    data = dimm.lsa.read(0, dimm.lsa.size)
                    out[f"<lsa {dimm.name}>"] = hashlib.sha256(data).hexdigest()
    return out


def _check_nd_bus(dev, after_crash: bool) -> list[str]:
    if not isinstance(dev, NvdimmBus):
        return []
    out: list[str] = []
    for dimm in dev.nvdimms():
        ndd = dimm.ndd
        if ndd is None:
            continue
        spans = sorted((r.start, r.end, r.name) for r in ndd.dpa)
        for (s1, e1, n1), (s2, e2, n2) in zip(spans, spans[1:]):
            if s2 < e1:
                out.append(f"{dimm.name}: {n1} [{s1:#x},{e1:#x}) overlaps {n2} [{s2:#x},{e2:#x})")
        for s, e, n in spans:
            if s < 0 or e > dimm.media.size or e <= s:
                out.append(f"{dimm.name}: {n} [{s:#x},{e:#x}) outside the DIMM or empty")
        if ndd.labels is not None and dimm.lsa is not None:
            out += _check_label_area(dimm, after_crash)
    for region in dev.regions():
        out += _check_region(region, after_crash)
    return out


def kernel_available_dpa(region) -> int:
    """nd_region_available_dpa() as region_devs.c/dimm_devs.c compute it.

    Written from the kernel source independently of Region.available_dpa:
    per mapping, each DPA resource widened to dpa_align() counts as busy if
    it starts in the mapping, ends in it or eclipses it; a resource that
    starts inside but runs past the mapping makes the mapping count 0; the
    free rest is rounded down to the align.  A disabled DIMM makes it 0.
    """
    if not region.mappings or region.align % len(region.mappings):
        return 0
    align = region.align // len(region.mappings)
    total = 0
    for m in region.mappings:
        ndd = m.nvdimm.ndd
        if ndd is None:
            return 0
        map_start, map_end = m.start, m.start + m.size - 1
        busy = 0
        misaligned = False
        for r in ndd.dpa:
            start = r.start // align * align
            end = -(-(r.start + r.size) // align) * align - 1
            if map_start <= start < map_end:
                if end > map_end:
                    misaligned = True
                    break
                busy += end - start + 1
            elif map_start <= end <= map_end:
                busy += end - start + 1
            elif start < map_start < end:
                busy += m.size
        if misaligned:
            continue
        if busy < m.size:
            total += (m.size - busy) // align * align
    return total


def _shown(dev, name: str) -> str | None:
    node = dev.kobj.get(name) if dev.kobj is not None else None
    if not isinstance(node, File):
        return None
    try:
        return node.read().decode(errors="replace")
    except Errno:
        return None


def _check_region(region, after_crash: bool = False) -> list[str]:
    out: list[str] = []
    if region.driver is None:
        kids = [c.name for c in region.children if c.registered]
        if kids:
            out.append(f"{region.name}: disabled but still has {kids}")
        return out
    namespaces = region.namespaces()
    used = sum(ns.capacity for ns in namespaces)
    labelled = region.nstype() == ND_DEVICE_NAMESPACE_PMEM
    if region.mappings:
        avail = kernel_available_dpa(region)
        # an io namespace spans the region without allocating DPA
        if labelled and used + avail > region.size:
            out.append(f"{region.name}: namespaces {used} + available {avail} > size {region.size}")
        shown = _shown(region, "available_size")
        if shown is not None and shown != f"{avail}\n":
            out.append(f"{region.name}: available_size shows {shown.strip()}, the kernel computes {avail}")
        extent = _shown(region, "max_available_extent")
        if extent is not None and extent.strip().isdigit() and int(extent) > avail:
            out.append(f"{region.name}: max_available_extent {extent.strip()} > available_size {avail}")
    spans = sorted((ns.res_start, ns.res_start + ns.res_size, ns.name)
                   for ns in namespaces if isinstance(ns, NamespacePmem) and ns.res_size)
    for s, e, n in spans:
        if s < region.start or e > region.start + region.size:
            out.append(f"{region.name}: {n} [{s:#x},{e:#x}) lies outside the region")
    for (s1, e1, n1), (s2, e2, n2) in zip(spans, spans[1:]):
        if s2 < e1:
            out.append(f"{region.name}: {n1} and {n2} overlap")
    # seeds
    for kind in ("ns_seed", "btt_seed", "pfn_seed", "dax_seed"):
        seed = getattr(region, kind)
        if seed is None:
            if kind != "ns_seed" or region.nstype() == ND_DEVICE_NAMESPACE_PMEM:
                out.append(f"{region.name}: no {kind}")
        elif not seed.registered:
            out.append(f"{region.name}: {kind} {seed.name} is not registered")
        elif seed.parent is not region:
            out.append(f"{region.name}: {kind} {seed.name} belongs to another region")
        elif seed.driver is not None and (kind != "ns_seed" or labelled):
            # (the io namespace of a label-less region is its seed, and bound)
            out.append(f"{region.name}: {kind} {seed.name} is bound to {seed.driver.name}")
    if not labelled:
        return out
    wanted = {}
    for ns in namespaces:
        if isinstance(ns, NamespacePmem) and ns.uuid is not None and ns.capacity:
            if ns.uuid in wanted:
                out.append(f"{region.name}: {ns.name} and {wanted[ns.uuid].name} share uuid {ns.uuid}")
            wanted[ns.uuid] = ns
    ids = {label_id(u) for u in wanted}
    for m in region.mappings:
        ndd = m.nvdimm.ndd
        if ndd is None:
            continue
        for r in ndd.dpa:
            inside = m.start <= r.start < m.start + m.size
            if inside and r.name not in ids and not after_crash:
                out.append(f"{m.nvdimm.name}: DPA [{r.start:#x},+{r.size:#x}) of {r.name} "
                           f"belongs to no namespace of {region.name}")
        if ndd.labels is None:
            continue
        area = _media_area(m.nvdimm)
        if area is None or not area.valid:
            if wanted:
                out.append(f"{m.nvdimm.name}: no valid label index but namespaces exist")
            continue
        cookie = region.nd_set.cookie(area.version) if region.nd_set is not None else None
        labels = {}
        for label in area.labels:
            if not m.start <= label.dpa < m.start + m.size:
                continue  # another region's label on the same DIMM
            labels[label.uuid] = label
        for uuid, ns in wanted.items():
            label = labels.get(uuid)
            res = ndd.resources(label_id(uuid))
            if label is None:
                out.append(f"{m.nvdimm.name}: no label for {ns.name} ({uuid})")
                continue
            if not res or label.dpa != res[0].start or label.rawsize != sum(r.size for r in res):
                out.append(f"{m.nvdimm.name}: label of {ns.name} disagrees with its DPA allocation")
            if label.nlabel != len(region.mappings) or label.position != m.position:
                out.append(f"{m.nvdimm.name}: label of {ns.name} has nlabel {label.nlabel} "
                           f"position {label.position}")
            # A label update writes one DIMM after the other: after a power
            # loss the DIMMs may disagree, and the kernel takes name and
            # lbasize from the label at position 0 (create_namespace_pmem()).
            settled = not after_crash or label.position == 0
            if settled and label.raw_name.split(b"\0", 1)[0] != ns.alt_name.encode("utf-8", "surrogateescape"):
                out.append(f"{m.nvdimm.name}: label of {ns.name} names it {label.raw_name!r}, "
                           f"alt_name is {ns.alt_name!r}")
            if settled and label.lbasize != ns.lbasize:
                out.append(f"{m.nvdimm.name}: label of {ns.name} has lbasize {label.lbasize}")
            if cookie is not None and label.isetcookie != cookie:
                out.append(f"{m.nvdimm.name}: label of {ns.name} has cookie {label.isetcookie:#x}, "
                           f"the set's is {cookie:#x}")
        for uuid in labels:
            if uuid not in wanted and not after_crash:
                out.append(f"{m.nvdimm.name}: label {uuid} belongs to no namespace of {region.name}")
    return out


class _MediaArea:
    """What one label area on media holds: parsed once per content."""

    def __init__(self, raw: bytes) -> None:
        store = Memory(len(raw))
        store.write(0, raw)
        self.raw = raw
        self.area = LabelArea(_RawIo(store))
        self.valid = self.area.validate()
        self.version = self.area.version if self.valid else None
        self.labels = self.area.labels() if self.valid else []
        self.problems: dict[bool, list[str]] = {}


class _RawIo(LsaIo):
    """The label area read straight from media; the checker never writes."""

    def write(self, offset: int, data: bytes) -> None:
        raise AssertionError("the invariant checker never writes labels")


_AREAS: dict[bytes, _MediaArea] = {}


def _media_area(dimm) -> _MediaArea | None:
    """The DIMM's label area as it is on media (not the driver's copy)."""
    if dimm.lsa is None or not dimm.lsa.size:
        return None
    raw = dimm.lsa.read(0, dimm.lsa.size)
    key = hashlib.blake2b(raw, digest_size=16).digest()
    found = _AREAS.get(key)
    if found is None:
        if len(_AREAS) > 512:
            _AREAS.clear()
        found = _AREAS[key] = _MediaArea(raw)
    return found


def _check_label_area(dimm, after_crash: bool) -> list[str]:
    """Both index blocks and every used slot of the area on media."""
    media = _media_area(dimm)
    if media is None:
        return []
    if not media.valid:
        if dimm.ndd is not None and dimm.ndd.labels is not None and dimm.ndd.labels.valid \
                and dimm.ndd.labels.labels() and dimm.busy:
            # the driver still uses labels the media lost
            return [f"{dimm.name}: the media has no valid index but the driver uses labels"]
        return []
    if after_crash not in media.problems:
        media.problems[after_crash] = _area_problems(media, after_crash)
    return [f"{dimm.name}: {p}" for p in media.problems[after_crash]]


def _area_problems(media: _MediaArea, after_crash: bool) -> list[str]:
    area = media.area
    if not area.valid:
        return []
    out: list[str] = []
    current = area.current
    lsz = area.label_size
    raw_all = media.raw
    # the loaded copy has the current index copied over the next one:
    # judge both blocks as they are on media
    raw = LabelArea(area.io)
    raw._label_size, raw._data = lsz, bytearray(raw_all)
    valid = [raw._index_block_valid(i) for i in (0, 1)]
    if valid != [True, True]:
        if not after_crash:
            out.append(f"index block {valid.index(False)} is not valid")
    else:
        seqs = [raw.index(i).seq & NSINDEX_SEQ_MASK for i in (0, 1)]
        if nd_inc_seq(seqs[0]) != seqs[1] and nd_inc_seq(seqs[1]) != seqs[0]:
            out.append(f"index sequence numbers {seqs} are not consecutive")
    seen: dict[bytes, int] = {}
    for slot in area._used_slots(current):
        off = area._slot_off(slot)
        raw = raw_all[off:off + lsz]
        if len(raw) < lsz:
            out.append(f"used slot {slot} lies past the area")
            continue
        (found,) = struct.unpack_from("<I", raw, 120)
        if found != slot:
            out.append(f"used slot {slot} holds a label for slot {found}")
            continue
        if not _label_checksum_ok(raw, lsz):
            out.append(f"label in slot {slot} has a bad checksum")
            continue
        label = decode_label(raw, lsz)
        if (label.dpa | label.rawsize) % PAGE_SIZE:
            out.append(f"label in slot {slot} is not 4K aligned")
        if label.flags & NSLABEL_FLAG_UPDATING and not after_crash:
            out.append(f"label {label.uuid} in slot {slot} is still flagged UPDATING")
        if raw[:16] in seen:
            out.append(f"uuid {label.uuid} has labels in slots {seen[raw[:16]]} and {slot}")
        seen[raw[:16]] = slot
    return out
