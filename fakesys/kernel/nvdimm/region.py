"""Regions: the ``regionN`` device (region_devs.c) and ``nd_region`` driver (region.c).

A region is a range of system physical address space backed by one or
more DIMM mappings (interleaved) or by none (e820, virtio-pmem).  Its
driver publishes the namespaces found in the labels (or the one io
namespace of a label-less region) and the btt/pfn/dax seeds, and takes
them all down again when it is unbound.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fakesys.errors import Errno
from fakesys.kernel.base.core import (
    ADMIN_RO, RO, RW, Attribute, AttributeGroup, Device, device_add, device_del, DeviceType,
)
from fakesys.kernel.base.dd import device_attach
from fakesys.kernel.base.driver import Driver, module_driver
from fakesys.kernel.memregion import memregion_alloc
from fakesys.kernel.nvdimm import badrange, btt_devs, dax_devs, namespace, pfn_devs
from fakesys.kernel.nvdimm.bus import (
    ND_DEVICE_GROUP, ND_DEVICE_NAMESPACE_IO, ND_DEVICE_NAMESPACE_PMEM, ND_DEVICE_REGION_PMEM,
    ND_NUMA_GROUP, NdDevice, NvdimmBus,
)
from fakesys.kernel.nvdimm.claim import Claim
from fakesys.kernel.nvdimm.dimm import Nvdimm
from fakesys.kernel.nvdimm.namespace import Namespace
from fakesys.kernel.parse import kstrtobool, kstrtoul
from fakesys.kernel.sizes import PAGE_SIZE, SZ_16M

if TYPE_CHECKING:
    from fakesys.kernel.kernel import Kernel

ND_MAX_MAPPINGS = 32


@dataclass
class Mapping:
    """struct nd_mapping: a DIMM's contribution to a region."""

    nvdimm: Nvdimm
    start: int  # DPA
    size: int
    position: int


@dataclass
class InterleaveSet:
    """struct nd_interleave_set: the cookies labels must carry.

    The provider computes the cookies (the NFIT in
    acpi_nfit_init_interleave_set()); :meth:`cookie` is the one place that
    chooses between them, for label writes, label scans, ``set_cookie``
    and the invariant checker alike.
    """

    cookie1: int
    cookie2: int
    altcookie: int
    type_guid: bytes = bytes(16)

    def cookie(self, index_version: tuple[int, int] | None) -> int:
        """nd_region_interleave_set_cookie(): the cookie of a label under a
        namespace index of ``index_version`` (None: no valid index).

        cookie1 under a v1.1 index; cookie2 under any other and when there
        is none, so an area about to be autolabelled (v1.2) agrees.  Labels
        carrying ``altcookie`` are accepted on scan, never written.
        """
        return self.cookie1 if index_version == (1, 1) else self.cookie2


@dataclass
class RegionDesc:
    """What a provider hands to nvdimm_pmem_region_create()."""

    start: int
    size: int
    mappings: list[Mapping] = field(default_factory=list)
    nd_set: InterleaveSet | None = None
    numa_node: int = 0
    target_node: int = 0
    pagemap: bool = False          # ND_REGION_PAGEMAP (e820, of_pmem, virtio)
    persist_cache: bool = False    # ND_REGION_PERSIST_CACHE
    persist_memctrl: bool = False  # ND_REGION_PERSIST_MEMCTRL
    async_flush: bool = False      # ND_REGION_ASYNC (virtio-pmem)
    flush_hints: bool = False
    read_only: bool = False
    provider_groups: tuple = ()
    media: object = None           # byte store for regions without DIMMs
    interleave_granularity: int = 4096
    volatile: bool = False         # nvdimm_volatile_region_create(): an nd_volatile region


class Region(NdDevice):
    type = None  # set per instance: nd_pmem

    def __init__(self, kernel: "Kernel", bus: NvdimmBus, id: int, desc: RegionDesc) -> None:
        super().__init__(kernel, f"region{id}", bus, bus=bus.nd.bus)
        self.type = VOLATILE_REGION_TYPE if desc.volatile else PMEM_REGION_TYPE
        self.nd_type = ND_DEVICE_REGION_PMEM
        self.id = id
        self.nvdimm_bus = bus
        self.desc = desc
        self.mappings = desc.mappings
        self.ro = desc.read_only or any(m.nvdimm.unarmed for m in desc.mappings)
        self.align = default_align(desc.size, len(desc.mappings))
        self.ns_seed: Device | None = None
        self.btt_seed: Device | None = None
        self.pfn_seed: Device | None = None
        self.dax_seed: Device | None = None
        self.ns_ids: set[int] = set()
        self.btt_ids: set[int] = set()
        self.pfn_ids: set[int] = set()
        self.dax_ids: set[int] = set()
        self.init_active = 0
        self.init_count = 0
        self.groups = list(desc.provider_groups)

    # -- basic facts ------------------------------------------------------

    @property
    def start(self) -> int:
        return self.desc.start

    @property
    def size(self) -> int:
        return self.desc.size

    @property
    def nd_set(self) -> InterleaveSet | None:
        return self.desc.nd_set

    def is_memory(self) -> bool:
        return True  # pmem and volatile regions; BLK regions are gone

    def numa_node(self) -> int:
        return self.desc.numa_node

    def target_node(self) -> int:
        return self.desc.target_node

    def nstype(self) -> int:
        """nd_region_to_nstype(): label-backed if any mapped DIMM is labeling."""
        if any(m.nvdimm.labeling for m in self.mappings):
            return ND_DEVICE_NAMESPACE_PMEM
        return ND_DEVICE_NAMESPACE_IO

    def has_flush(self) -> int:
        """nvdimm_has_flush(): -1 without mappings, 1 with flush hints, else 0."""
        if not self.mappings:
            return -1
        return 1 if self.desc.flush_hints else 0

    def namespaces(self) -> list[Namespace]:
        return [c for c in self.children if isinstance(c, Namespace)]

    def ndds(self):
        return [m.nvdimm.ndd for m in self.mappings]

    # -- DPA accounting (dimm_devs.c / region_devs.c) --------------------

    def _unit(self) -> int:
        return self.align // max(len(self.mappings), 1)

    def _busy_extents(self, mapping: Mapping, ignore: str | None = None) -> list[tuple[int, int]]:
        ndd = mapping.nvdimm.ndd
        unit = self._unit()
        out = []
        for r in ndd.dpa if ndd else []:
            if r.name == ignore:
                continue
            s, e = max(r.start, mapping.start), min(r.end, mapping.start + mapping.size)
            if s < e:
                out.append((s // unit * unit, -(-e // unit) * unit))
        return sorted(out)

    def free_extents(self, mapping: Mapping, ignore: str | None = None) -> list[tuple[int, int]]:
        """Free [start, end) DPA extents of ``mapping``, aligned inward to align/N."""
        unit = self._unit()
        cursor = mapping.start
        end = mapping.start + mapping.size
        out = []
        for s, e in self._busy_extents(mapping, ignore) + [(end, end)]:
            a = -(-cursor // unit) * unit
            b = min(s, end) // unit * unit
            if b > a:
                out.append((a, b))
            cursor = max(cursor, e)
        return out

    def _mapping_available(self, m: Mapping) -> int:
        """nd_pmem_available_dpa() of one mapping."""
        unit = self._unit()
        busy = sum(e - s for s, e in self._busy_extents(m))
        return max(m.size - busy, 0) // unit * unit

    def available_dpa(self) -> int:
        """nd_region_available_dpa(): what ``available_size`` shows."""
        if not self.mappings or any(m.nvdimm.ndd is None for m in self.mappings):
            return 0
        return sum(self._mapping_available(m) for m in self.mappings)

    def allocatable_dpa(self) -> int:
        """nd_region_allocatable_dpa(): largest contiguous extent times N.

        The kernel (nd_pmem_max_contiguous_dpa) first reserves as much free
        space as nd_pmem_available_dpa() reports, first fit in DPA order,
        then takes the largest reserved piece.  That bound matters: the
        available count widens every allocation to the alignment on its own,
        so it can be smaller than the free space (allocations sharing an
        align unit after ``align`` grew), and the extent never exceeds it.
        """
        if not self.mappings or any(m.nvdimm.ndd is None for m in self.mappings):
            return 0
        unit = self._unit()
        biggest = None
        for m in self.mappings:
            left, best = self._mapping_available(m), 0
            for s, e in self.free_extents(m):
                if left <= 0:
                    break
                take = min(e - s, left)
                best = max(best, take // unit * unit)
                left -= take
            biggest = best if biggest is None else min(biggest, best)
        return (biggest or 0) * len(self.mappings)

    # -- media --------------------------------------------------------------

    def media_locate(self, offset: int) -> tuple[object, int, int]:
        """Map a region offset to (store, store offset, contiguous bytes)."""
        if not self.mappings:
            return self.desc.media, offset, self.size - offset
        n = len(self.mappings)
        if n == 1:
            m = self.mappings[0]
            return m.nvdimm.media, m.start + offset, m.size - offset
        g = self.desc.interleave_granularity
        line, within = divmod(offset, g)
        m = self.mappings[line % n]
        return m.nvdimm.media, m.start + (line // n) * g + within, g - within

    def media_read(self, offset: int, length: int) -> bytes:
        out = bytearray()
        while length > 0:
            store, off, run = self.media_locate(offset)
            run = min(run, length)
            out += store.read(off, run)
            offset += run
            length -= run
        return bytes(out)

    def media_write(self, offset: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            store, off, run = self.media_locate(offset)
            run = min(run, len(view))
            store.write(off, bytes(view[:run]))
            offset += run
            view = view[run:]

    # -- seeds (nd_region_advance_seeds) -----------------------------------

    def advance_seeds(self, dev: Device) -> None:
        if dev is self.ns_seed:
            namespace.create_ns_seed(self)
        elif isinstance(dev, Claim):
            seed_attr = f"{dev.kind}_seed"
            if getattr(self, seed_attr) is dev:
                setattr(self, seed_attr, dev.create_seed(self))
            if dev.ndns is not None and dev.ndns is self.ns_seed:
                namespace.create_ns_seed(self)

    # -- attribute handlers -------------------------------------------------

    def align_store(self, buf: str) -> None:
        val = kstrtoul(buf, 0)
        n = len(self.mappings)
        if not n:
            raise Errno(errno.ENXIO, "region has no mappings")
        dpa, rem = divmod(val, n)
        if dpa & (dpa - 1) or dpa < PAGE_SIZE or val > self.size or rem:
            raise Errno(errno.EINVAL, f"align {val:#x} invalid")
        self.align = val

    def read_only_store(self, buf: str) -> None:
        self.ro = kstrtobool(buf)

    def deep_flush_store(self, buf: str) -> None:
        if not kstrtobool(buf):
            raise Errno(errno.EINVAL, "deep_flush only accepts true")

    def set_cookie_show(self) -> str:
        nd_set = self.nd_set
        if nd_set is None:
            raise Errno(errno.ENXIO)
        cookie = nd_set.cookie1
        if self.mappings:
            ndd = self.mappings[0].nvdimm.ndd
            if ndd is not None:
                cookie = nd_set.cookie(ndd.labels.version if ndd.labels is not None else None)
        return f"{cookie:#x}\n"

    def init_namespaces_show(self) -> str:
        if self.driver is None:
            raise Errno(errno.ENXIO, "region not enabled")
        return f"{self.init_active}/{self.init_count}\n"

    def badblocks_show(self) -> str:
        if self.driver is None:
            raise Errno(errno.ENXIO, "region not enabled")
        return badrange.badblocks_show(self.nvdimm_bus, self.start, self.size)

    def persistence_domain_show(self) -> str:
        if self.desc.persist_cache:
            return "cpu_cache\n"
        if self.desc.persist_memctrl:
            return "memory_controller\n"
        return "\n"


def default_align(size: int, mappings: int) -> int:
    """default_align(): 16 MiB (PAGE_SIZE for small regions), times N if needed."""
    align = SZ_16M if size >= SZ_16M else PAGE_SIZE
    if mappings and align % mappings:
        align *= mappings
    return align


def _seed_show(attr: str):
    def show(r: Region) -> str:
        seed = getattr(r, attr)
        return f"{seed.name}\n" if seed is not None else "\n"
    return show


def region_visible(r: Region, a: Attribute) -> int:
    """region_visible() in region_devs.c."""
    if a.name == "deep_flush":
        flush = r.has_flush()
        return a.mode if flush == 1 else 0o444 if flush == 0 else 0
    if a.name == "persistence_domain":
        return a.mode if r.desc.persist_cache or r.desc.persist_memctrl else 0
    if a.name not in ("set_cookie", "available_size"):
        return a.mode
    if a.name == "available_size" and r.nstype() == ND_DEVICE_NAMESPACE_PMEM:
        return a.mode
    return a.mode if r.is_memory() and r.nd_set is not None else 0


REGION_GROUP = AttributeGroup([
    RO("size", lambda r: f"{r.size}\n"),
    RW("align", lambda r: f"{r.align:#x}\n", Region.align_store),
    RO("nstype", lambda r: f"{r.nstype()}\n"),
    RO("mappings", lambda r: f"{len(r.mappings)}\n"),
    RO("btt_seed", _seed_show("btt_seed")),
    RO("pfn_seed", _seed_show("pfn_seed")),
    RO("dax_seed", _seed_show("dax_seed")),
    RO("namespace_seed", _seed_show("ns_seed")),
    RW("deep_flush", lambda r: f"{max(r.has_flush(), 0)}\n", Region.deep_flush_store),
    RW("read_only", lambda r: f"{int(r.ro)}\n", Region.read_only_store),
    RO("set_cookie", Region.set_cookie_show),
    RO("available_size", lambda r: f"{r.available_dpa()}\n"),
    RO("max_available_extent", lambda r: f"{r.allocatable_dpa()}\n"),
    RO("init_namespaces", Region.init_namespaces_show),
    RO("badblocks", Region.badblocks_show),
    ADMIN_RO("resource", lambda r: f"{r.start:#x}\n"),
    RO("persistence_domain", Region.persistence_domain_show),
], is_visible=region_visible)


def _mapping_show(n: int):
    def show(r: Region) -> str:
        m = r.mappings[n]
        return f"{m.nvdimm.name},{m.start},{m.size},{m.position}\n"
    return show


MAPPING_GROUP = AttributeGroup(
    [RO(f"mapping{n}", _mapping_show(n)) for n in range(ND_MAX_MAPPINGS)],
    is_visible=lambda r, a: a.mode if int(a.name[7:]) < len(r.mappings) else 0,
)

PMEM_REGION_TYPE = DeviceType("nd_pmem", [ND_DEVICE_GROUP, REGION_GROUP, ND_NUMA_GROUP, MAPPING_GROUP])
VOLATILE_REGION_TYPE = DeviceType("nd_volatile", PMEM_REGION_TYPE.groups)


@module_driver
class NdRegionDriver(Driver):
    """``nd_region``: publishes namespaces and seeds; unpublishes them on remove."""

    name = "nd_region"
    bus_name = "nd"
    module = "libnvdimm"
    type_mask = (1 << 2) | (1 << 3)

    def probe(self, dev: Device) -> None:
        assert isinstance(dev, Region)
        for m in dev.mappings:
            if m.nvdimm.ndd is None and (m.nvdimm.locked or m.nvdimm.labeling):
                raise Errno(errno.ENXIO, f"{m.nvdimm.name} is disabled")
        for m in dev.mappings:
            m.nvdimm.busy += 1
        namespaces = namespace.register_namespaces(dev)
        dev.btt_seed = btt_devs.create_seed(dev)
        dev.pfn_seed = pfn_devs.create_seed(dev)
        dev.dax_seed = dax_devs.create_seed(dev)
        dev.init_active = dev.init_count = len(namespaces)
        for ns in namespaces:  # probing is asynchronous in the kernel: seeds come first
            if ns.registered and ns.driver is None:
                device_attach(ns)

    def remove(self, dev: Device) -> None:
        assert isinstance(dev, Region)
        for child in list(dev.children):
            device_del(child)
        dev.ns_seed = dev.btt_seed = dev.pfn_seed = dev.dax_seed = None
        for ids in (dev.ns_ids, dev.btt_ids, dev.pfn_ids, dev.dax_ids):
            ids.clear()
        for m in dev.mappings:
            m.nvdimm.busy -= 1


# The iomem resource the platform firmware publishes for a provider's SPA
# ranges (acpi_nfit_insert_resource); it outlives the region.  e820 ranges
# are in iomem from boot (nvdimm/e820.py); virtio-pmem, of_pmem and
# nfit_test publish none.
FIRMWARE_IOMEM = {"ACPI.NFIT": "Persistent Memory"}


def iomem_wrapped(region: "Region") -> bool:
    """nfit_test's ranges are test memory, not physical addresses: its
    nfit_test_iomap wraps devm_request_mem_region() for them, so the
    pmem, dax_pmem and device_dax requests never reach /proc/iomem."""
    return region.nvdimm_bus.provider.startswith("nfit_test")


def region_create(bus: NvdimmBus, desc: RegionDesc, probe: bool = True) -> Region:
    """nvdimm_pmem_region_create()."""
    kernel = bus.kernel
    fw_name = FIRMWARE_IOMEM.get(bus.provider)
    end = desc.start + desc.size - 1
    if fw_name and kernel.iomem.find(desc.start, end, fw_name) is None:
        kernel.iomem.insert(fw_name, desc.start, end)
    region = Region(kernel, bus, memregion_alloc(kernel), desc)
    device_add(region, probe=probe)
    return region
