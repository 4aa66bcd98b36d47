"""The dax bus (drivers/dax/bus.c): dax regions and ``daxR.N`` devices.

A dax region is not a device.  alloc_dax_region() hangs a ``dax_region/``
group on the device that provides the address range (the nd dax claim for
dax_pmem, the platform device ``hmem.N`` for dax_hmem) and the region's dax
devices become children of that device, on the dax bus.

* A *static* region (pmem) has exactly one device of fixed size: no
  ``create``/``delete``/``seed``/``available_size``, no ``mapping``, and
  ``size``/``align`` are read-only.
* A *dynamic* region (hmem) is an allocator over its range.  ``create``
  registers an empty device (the lowest free id of the region), ``size``
  grows a device first-fit from the start of the region (extending its
  last range in place when the free space follows it) or shrinks it from
  its last range backwards, ``mapping`` claims an exact range, ``delete``
  unregisters an empty unbound device other than ``daxR.0``.  Each range
  of a device is a ``mappingN`` child (N from a per-device id pool).

Every store validates before it changes anything and raises the errno
bus.c returns.  The drivers (``device_dax`` in device.py, ``kmem`` in
kmem.py) are loaded when the first dax device appears, as udev's modalias
autoload of ``dax:t0`` does.  Which driver a device matches depends on
the kernel version (see :meth:`DaxBus.match`).
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fakesys.errors import Errno
from fakesys.kernel.base.bus import Bus
from fakesys.kernel.base.core import (
    ADMIN_RO, RO, RW, WO, Attribute, AttributeGroup, Device, DeviceType, device_add, device_del,
)
from fakesys.kernel.base.dd import driver_attach
from fakesys.kernel.base.driver import Driver, built_drivers, driver_register
from fakesys.kernel.base.module import module_load, request_module
from fakesys.kernel.fs.char_dev import chrdev_major
from fakesys.kernel.parse import (
    kstrtobool, kstrtoint, kstrtoul, kstrtoull, parse_store, strip_newline,
)
from fakesys.kernel.resource import Resource
from fakesys.kernel.sizes import PAGE_SIZE
from fakesys.sysfs.tree import File

if TYPE_CHECKING:
    from fakesys.kernel.kernel import Kernel

PMD_SIZE = 2 << 20
PUD_SIZE = 1 << 30
# memremap_compat_align(): the smallest granule a dax range may have on
# x86-64 (one memory subsection), whatever the device's align says
SUBSECTION_SIZE = 2 << 20
_U64 = (1 << 64) - 1

DAX_MODALIAS = "dax:t0"


def dax_align_valid(align: int) -> bool:
    """dax_align_valid(): a page, a PMD or (with PUD THP, as on x86-64) a PUD."""
    return align in (PAGE_SIZE, PMD_SIZE, PUD_SIZE)


@dataclass
class Allocation:
    """A child resource of a region (__request_region): one range of a device."""

    start: int
    end: int  # inclusive
    owner: "DevDax"

    @property
    def size(self) -> int:
        return self.end - self.start + 1


@dataclass
class DaxRange:
    """struct dev_dax_range: where device page ``pgoff`` onwards lives."""

    pgoff: int
    start: int
    end: int  # inclusive
    mapping: "DaxMapping | None" = None

    @property
    def size(self) -> int:
        return self.end - self.start + 1


class DaxRegion:
    """struct dax_region: the range, its allocations, the device ids, the seeds."""

    def __init__(self, kernel: "Kernel", host: Device, id: int, start: int, size: int,
                 target_node: int, align: int, static: bool, kmem: bool) -> None:
        self.kernel = kernel
        self.host = host
        self.id = id
        self.start = start
        self.size = size
        self.target_node = target_node
        self.align = align
        self.static = static   # IORESOURCE_DAX_STATIC
        self.kmem = kmem       # IORESOURCE_DAX_KMEM: its devices are for kmem (6.3+)
        self.res: list[Allocation] = []  # sorted by start
        self.ids: set[int] = set()
        self.devices: list[DevDax] = []  # registered devices, oldest first
        self.seed: DevDax | None = None
        self.youngest: DevDax | None = None
        # what the region's memory keeps across reboots: None for volatile
        # memory (hmem), an id of the media (a pmem info block's uuid) else
        self.persistent_id: str | None = None
        # its ranges are test memory (nfit_test): requests never reach iomem
        self.iomem_wrapped = False

    @property
    def end(self) -> int:
        return self.start + self.size - 1

    def available_size(self) -> int:
        return self.size - sum(a.size for a in self.res)

    def request(self, start: int, size: int, owner: "DevDax") -> Allocation | None:
        """__request_region(): inside the region and overlapping nothing, or None."""
        end = start + size - 1
        if size <= 0 or start < self.start or end > self.end:
            return None
        if any(a.start <= end and start <= a.end for a in self.res):
            return None
        alloc = Allocation(start, end, owner)
        self.res.append(alloc)
        self.res.sort(key=lambda a: a.start)
        return alloc

    def find(self, owner: "DevDax", start: int) -> Allocation | None:
        return next((a for a in self.res if a.owner is owner and a.start == start), None)

    def release(self, owner: "DevDax", start: int) -> None:
        alloc = self.find(owner, start)
        if alloc is not None:
            self.res.remove(alloc)

    def child(self, name: str) -> "DevDax | None":
        """device_find_child_by_name() among the region's dax devices."""
        name = strip_newline(name)
        return next((d for d in self.devices if d.name == name), None)

    # -- dax_region/ attributes --------------------------------------------

    def create_show(self) -> str:
        if self.static:
            raise Errno(errno.EINVAL, "static dax region")
        return f"{self.youngest.name if self.youngest else ''}\n"

    def seed_show(self) -> str:
        if self.static:
            raise Errno(errno.EINVAL, "static dax region")
        return f"{self.seed.name if self.seed else ''}\n"

    def create_store(self, buf: str) -> None:
        """create_store(): "1" adds an empty device; a full region is ENOSPC."""
        if self.static:
            raise Errno(errno.EINVAL, "static dax region")
        if kstrtoint(buf, 0) != 1:
            raise Errno(errno.EINVAL, "only 1 may be written to create")
        if self.available_size() == 0:
            raise Errno(errno.ENOSPC, f"dax region {self.id} is full")
        dev = self.kernel.dax.create_dev_dax(self, -1, 0)
        if self.seed is None:
            self.seed = dev
        self.youngest = dev

    def delete_store(self, buf: str) -> None:
        """delete_store(): only an unbound, empty device other than id 0 goes."""
        if self.static:
            raise Errno(errno.EINVAL, "static dax region")
        victim = self.child(buf)
        if victim is None:
            raise Errno(errno.ENXIO, f"no dax device {strip_newline(buf)!r} in region {self.id}")
        if victim.driver is not None or victim.size:
            raise Errno(errno.EBUSY, f"{victim.name} is enabled or not empty")
        if victim.id <= 0:
            raise Errno(errno.EBUSY, f"{victim.name} keeps /sys/bus/dax populated")
        self.ids.discard(victim.id)
        victim.id = -1
        if self.seed is victim:
            self.seed = None
        if self.youngest is victim:
            self.youngest = None
        self.kernel.dax.unregister_dev_dax(victim)


def _region(dev: Device) -> DaxRegion:
    return dev.dax_region  # type: ignore[attr-defined]


def _region_visible(dev: Device, a: Attribute) -> int:
    if _region(dev).static and a.name in ("available_size", "create", "seed", "delete"):
        return 0
    return a.mode


DAX_REGION_GROUP = AttributeGroup([
    RO("available_size", lambda d: f"{_region(d).available_size()}\n"),
    RO("size", lambda d: f"{_region(d).size}\n"),
    ADMIN_RO("align", lambda d: f"{_region(d).align}\n"),
    RW("create", lambda d: _region(d).create_show(), lambda d, b: _region(d).create_store(b)),
    RO("seed", lambda d: _region(d).seed_show()),
    WO("delete", lambda d, b: _region(d).delete_store(b)),
    RO("id", lambda d: f"{_region(d).id}\n"),
], name="dax_region", is_visible=_region_visible)


def alloc_dax_region(kernel: "Kernel", host: Device, region_id: int, start: int, size: int,
                     target_node: int, align: int, static: bool = False,
                     kmem: bool = False) -> DaxRegion:
    """alloc_dax_region(): publish ``dax_region/`` on ``host``.

    A range not aligned to ``align``, or a host that has a region already,
    gets no region: the provider's probe then fails with ENOMEM.
    """
    if getattr(host, "dax_region", None) is not None:
        raise Errno(errno.ENOMEM, f"{host.name} has a dax region already")
    if start % align or size % align:
        raise Errno(errno.ENOMEM, f"range {start:#x}+{size:#x} is not {align:#x}-aligned")
    region = DaxRegion(kernel, host, region_id, start, size, target_node, align, static, kmem)
    host.dax_region = region  # type: ignore[attr-defined]
    host.groups.append(DAX_REGION_GROUP)
    host.refresh_group(DAX_REGION_GROUP)
    return region


def dax_region_unregister(region: DaxRegion) -> None:
    """What the host's devm actions undo when its driver lets go: the devices
    (newest first, each after its mappings), then the ``dax_region/`` group."""
    dax = region.kernel.dax
    for dev in reversed(list(region.devices)):
        dax.unregister_dev_dax(dev)
    host = region.host
    if host.kobj is not None:
        host.kobj.remove(DAX_REGION_GROUP.name)
    if DAX_REGION_GROUP in host.groups:
        host.groups.remove(DAX_REGION_GROUP)
    host.dax_region = None  # type: ignore[attr-defined]


# ---------------------------------------------------------------- devices

class DaxMapping(Device):
    """``mappingN``: one range of a dax device (struct dax_mapping).  No bus,
    no class: its directory has ``uevent``, ``power/`` and the three values."""

    pm = True

    def __init__(self, kernel: "Kernel", parent: "DevDax", id: int, range: DaxRange) -> None:
        super().__init__(kernel, f"mapping{id}", parent)
        self.id = id
        self.range: DaxRange | None = range
        self.groups = [MAPPING_GROUP]

    def _range(self) -> DaxRange:
        if self.range is None:
            raise Errno(errno.ENXIO, f"{self.name} is being torn down")
        return self.range


MAPPING_GROUP = AttributeGroup([
    ADMIN_RO("start", lambda m: f"{m._range().start:#x}\n"),
    ADMIN_RO("end", lambda m: f"{m._range().end:#x}\n"),
    ADMIN_RO("page_offset", lambda m: f"{m._range().pgoff:#x}\n"),
])


class DevDax(Device):
    """``daxR.N`` (struct dev_dax), char device /dev/daxR.N."""

    pm = True

    def __init__(self, kernel: "Kernel", region: DaxRegion, id: int, minor: int) -> None:
        super().__init__(kernel, f"dax{region.id}.{id}", region.host, bus=kernel.dax.bus,
                         devt=(chrdev_major(kernel, "dax"), minor))
        self.type = DEV_DAX_TYPE
        self.minor = minor  # the dax_device's own minor (devt may be renumbered while published)
        self.region = region
        self.id = id
        self.dyn_id = not region.static
        self.ranges: list[DaxRange] = []
        self.align = region.align
        self.target_node = region.target_node
        self.memmap_on_memory = False
        self.mapping_ids: set[int] = set()
        self.live = False  # the char device is live (bound to device_dax)

    @property
    def size(self) -> int:
        return sum(r.size for r in self.ranges)

    def numa_node(self) -> int:
        """dev_to_node(): a dax device inherits its parent's node."""
        parent = self.parent_device
        numa = getattr(parent, "numa_node", None)
        return numa() if callable(numa) else -1

    def visible(self, a: Attribute) -> int:
        if a.name == "target_node" and self.target_node < 0:
            return 0
        if a.name == "mapping" and self.region.static:
            return 0
        if a.name in ("align", "size") and self.region.static:
            return 0o444
        if a.name == "memmap_on_memory" and not self.kernel.version.dax_memmap_on_memory:
            return 0
        return a.mode

    def resource_show(self) -> str:
        return f"{self.ranges[0].start if self.ranges else self.region.start:#x}\n"

    def media_key(self) -> str:
        """A name for this device's bytes in the data path: the same for the
        same persistent media across reboots, unique among live devices else."""
        if self.region.persistent_id is not None:
            return f"pmem-{self.region.persistent_id}"
        return f"{self.region.host.name}-{self.name}"

    def aligned(self, size: int) -> bool:
        """alloc_is_aligned(): a multiple of the align, and of a subsection."""
        return size % max(self.align, SUBSECTION_SIZE) == 0

    def _region_enabled(self) -> None:
        if self.region.host.driver is None:
            raise Errno(errno.ENXIO, f"dax region {self.region.id} is disabled")

    # -- ranges ------------------------------------------------------------

    def alloc_range(self, start: int, size: int) -> None:
        """alloc_dev_dax_range(): claim [start, start+size) and add its mapping."""
        alloc = self.region.request(start, size, self)
        if alloc is None:
            raise Errno(errno.ENOMEM, f"{start:#x}+{size:#x} is taken or outside dax region {self.region.id}")
        pgoff = sum(r.size // PAGE_SIZE for r in self.ranges)
        rng = DaxRange(pgoff, alloc.start, alloc.end)
        self.ranges.append(rng)
        if self.registered:
            self.register_mapping(rng)

    def register_mapping(self, rng: DaxRange) -> None:
        """devm_register_dax_mapping(): ``mappingN`` for a range."""
        mid = 0
        while mid in self.mapping_ids:
            mid += 1
        self.mapping_ids.add(mid)
        rng.mapping = DaxMapping(self.kernel, self, mid, rng)
        device_add(rng.mapping)

    def unregister_mapping(self, rng: DaxRange) -> None:
        mapping = rng.mapping
        if mapping is None:
            return
        rng.mapping = None
        mapping.range = None
        device_del(mapping)
        self.mapping_ids.discard(mapping.id)

    def trim_range(self) -> None:
        """trim_dev_dax_range(): give the last range back to the region."""
        rng = self.ranges.pop()
        self.region.release(self, rng.start)

    def _shrink(self, size: int) -> None:
        """dev_dax_shrink(): whole ranges from the end, then the last one in place."""
        to_shrink = self.size - size
        while to_shrink and self.ranges:
            rng = self.ranges[-1]
            if to_shrink >= rng.size:
                self.unregister_mapping(rng)
                self.trim_range()
                to_shrink -= rng.size
                continue
            alloc = self.region.find(self, rng.start)
            if alloc is None:
                raise Errno(errno.ENXIO, f"{self.name}: no resource for its last range")
            rng.end = rng.start + rng.size - to_shrink - 1
            alloc.end = rng.end
            return

    def _adjust_ok(self, alloc: Allocation) -> bool:
        """adjust_ok(): ``alloc`` is this device's last range, which has the highest pgoff."""
        if not self.ranges or alloc.owner is not self:
            return False
        last = self.ranges[-1]
        if (last.start, last.end) != (alloc.start, alloc.end):
            return False
        return all(r.pgoff <= last.pgoff for r in self.ranges[:-1])

    def resize(self, size: int) -> None:
        """dev_dax_resize()."""
        region = self.region
        avail = region.available_size()
        dev_size = self.size
        if self.driver is not None:
            raise Errno(errno.EBUSY, f"{self.name} is enabled")
        if size == dev_size:
            return
        if size > dev_size and size - dev_size > avail:
            raise Errno(errno.ENOSPC, f"dax region {region.id} has {avail} bytes left")
        if size < dev_size:
            self._shrink(size)
            return
        to_alloc = size - dev_size
        if not self.aligned(to_alloc):
            raise Errno(errno.ENXIO, f"resize of {to_alloc:#x} misaligned")
        while to_alloc:
            if not region.res:
                self.alloc_range(region.start, to_alloc)
                return
            alloc, adjust = 0, None
            for i, res in enumerate(region.res):
                nxt = region.res[i + 1] if i + 1 < len(region.res) else None
                if i == 0 and res.start > region.start:  # space at the start of the region
                    alloc = min(res.start - region.start, to_alloc)
                    self.alloc_range(region.start, alloc)
                    break
                alloc = 0
                if nxt is not None and nxt.start > res.end + 1:  # a gap between allocations
                    alloc = min(nxt.start - (res.end + 1), to_alloc)
                if not alloc and nxt is None and res.end < region.end:  # space at the end
                    alloc = min(region.end - res.end, to_alloc)
                if not alloc:
                    continue
                if self._adjust_ok(res):
                    adjust = res
                else:
                    self.alloc_range(res.end + 1, alloc)
                break
            else:
                raise Errno(errno.ENOSPC, f"dax region {region.id} has no room")
            if adjust is not None:
                adjust.end += alloc
                self.ranges[-1].end = adjust.end
            to_alloc -= alloc

    # -- attributes --------------------------------------------------------

    def size_store(self, buf: str) -> None:
        value = kstrtoull(buf, 0)
        if not self.aligned(value):
            raise Errno(errno.EINVAL, f"size {value:#x} is not a multiple of {max(self.align, SUBSECTION_SIZE):#x}")
        self._region_enabled()
        self.resize(value)

    def mapping_store(self, buf: str) -> None:
        """mapping_store(): ``START-END`` in hex (END inclusive), claimed exactly."""
        start_s, sep, end_s = buf.partition("-")
        if not sep:
            raise Errno(errno.EINVAL, "mapping is START-END")
        start, end = kstrtoull(start_s, 16), kstrtoull(end_s, 16)
        self._region_enabled()
        to_alloc = (end - start + 1) & _U64
        if not self.aligned(to_alloc):
            if self.kernel.version.dax_mapping_misaligned_is_noop:
                return
            raise Errno(errno.ENXIO, f"mapping length {to_alloc:#x} misaligned")
        self.alloc_range(start, to_alloc)

    def align_store(self, buf: str) -> None:
        try:
            value = kstrtoul(buf, 0)
        except Errno:
            raise Errno(errno.ENXIO, "align is a number") from None
        if not dax_align_valid(value):
            raise Errno(errno.EINVAL, f"align {value} is not 4K, 2M or 1G")
        self._region_enabled()
        if self.driver is not None:
            raise Errno(errno.EBUSY, f"{self.name} is enabled")
        saved, self.align = self.align, value
        if not all(self.aligned(r.size) for r in self.ranges):
            self.align = saved
            raise Errno(errno.EINVAL, f"a range of {self.name} is not {value:#x}-aligned")

    def memmap_on_memory_store(self, buf: str) -> None:
        value = kstrtobool(buf)
        if value and not MHP_MEMMAP_ON_MEMORY:
            raise Errno(errno.EOPNOTSUPP, "memmap_on_memory is not available")
        if value != self.memmap_on_memory and getattr(self.driver, "kmem_type", False):
            raise Errno(errno.EBUSY, f"{self.name} is bound to kmem")
        self.memmap_on_memory = value


# mhp_supports_memmap_on_memory(): off unless memory_hotplug.memmap_on_memory=1
MHP_MEMMAP_ON_MEMORY = False

DEV_DAX_GROUP = AttributeGroup([
    RO("modalias", lambda d: f"{DAX_MODALIAS}\n"),
    RW("size", lambda d: f"{d.size}\n", DevDax.size_store),
    WO("mapping", DevDax.mapping_store),
    RO("target_node", lambda d: f"{d.target_node}\n"),
    RW("align", lambda d: f"{d.align}\n", DevDax.align_store),
    ADMIN_RO("resource", DevDax.resource_show),
    RO("numa_node", lambda d: f"{d.numa_node()}\n"),
    RW("memmap_on_memory", lambda d: f"{int(d.memmap_on_memory)}\n", DevDax.memmap_on_memory_store),
], is_visible=lambda d, a: d.visible(a))

DEV_DAX_TYPE = DeviceType(None, [DEV_DAX_GROUP])


# ---------------------------------------------------------------- bus and drivers

class DaxBus(Bus):
    def __init__(self, kernel: "Kernel") -> None:
        super().__init__(kernel, "dax")

    def match(self, dev: Device, drv: Driver) -> bool:
        """dax_bus_match(): by name (new_id), then by type (6.3+) or match_always."""
        if not isinstance(dev, DevDax) or not isinstance(drv, DaxDriver):
            return False
        if dev.name in drv.ids:
            return True
        if self.kernel.version.dax_match_by_type:
            return drv.kmem_type == dev.region.kmem
        return drv.match_always

    def uevent_env(self, dev: Device) -> list[str]:
        return [f"MODALIAS={DAX_MODALIAS}"]

    def probe(self, dev: Device, drv: Driver) -> None:
        """dax_bus_probe(): empty or deleted devices are refused; a dynamic
        region's seed stops being the seed once it has probed."""
        assert isinstance(dev, DevDax)
        if dev.size == 0 or dev.id < 0:
            raise Errno(errno.ENXIO, f"{dev.name} is empty")
        drv.probe(dev)
        region = dev.region
        if not region.static and region.seed is dev:
            region.seed = None


_DEVNAME_RE = re.compile(r"dax(-?\d+)\.(-?\d+)")


class DaxDriver(Driver):
    """struct dax_device_driver: bind/unbind plus the ``new_id``/``remove_id`` list."""

    bus_name = "dax"
    match_always = False  # device_dax before 6.3
    kmem_type = False     # DAXDRV_KMEM_TYPE (matches KMEM regions from 6.3)

    def __init__(self, kernel: "Kernel", bus: Bus) -> None:
        super().__init__(kernel, bus)
        self.ids: list[str] = []  # newest first, like list_add()

    def add_id_files(self) -> None:
        assert self.dir is not None
        self.dir.add(File("new_id", 0o200, None, lambda data: self.id_store(parse_store(data), True)))
        self.dir.add(File("remove_id", 0o200, None, lambda data: self.id_store(parse_store(data), False)))

    def id_store(self, buf: str, add: bool) -> None:
        """do_id_store(): exactly ``dax%d.%d`` (one trailing newline allowed).
        new_id remembers the name and attaches every unbound device this
        driver now matches; remove_id forgets it and unbinds nothing."""
        m = _DEVNAME_RE.match(buf)
        name = f"dax{int(m.group(1))}.{int(m.group(2))}" if m else ""
        if not m or strip_newline(buf) != name or any(not -(1 << 31) <= int(g) < (1 << 31) for g in m.groups()):
            raise Errno(errno.EINVAL, f"{strip_newline(buf)!r} is not a dax device name")
        if add:
            if name not in self.ids:
                self.ids.insert(0, name)
            driver_attach(self)
        elif name in self.ids:
            self.ids.remove(name)



class Dax:
    """The dax core: the bus, char minors, the drivers once loaded."""

    def __init__(self, kernel: "Kernel") -> None:
        self.kernel = kernel
        self.bus = kernel.register_bus(DaxBus(kernel))
        self.minors: set[int] = set()
        self.drivers: dict[str, DaxDriver] = {}

    @property
    def drivers_loaded(self) -> bool:
        return bool(self.drivers)

    def alloc_minor(self) -> int:
        """A dax_device's minor: the lowest free one (pmem disks take one too)."""
        i = 0
        while i in self.minors:
            i += 1
        self.minors.add(i)
        return i

    def free_minor(self, minor: int) -> None:
        self.minors.discard(minor)

    def request_mem_region(self, start: int, size: int, name: str, wrapped: bool = False):
        """request_mem_region() in the machine's iomem tree: the resource, or
        None when someone holds (part of) the range.  ``wrapped``: a test
        range (nfit_test) whose requests never reach iomem."""
        if wrapped:
            return Resource(name, start, start + size - 1)
        return self.kernel.iomem.request_region(start, size, name)

    def release_mem_region(self, start: int, size: int) -> None:
        self.kernel.iomem.release_region(start, size)

    def device_by_devt(self, devt: tuple[int, int]) -> DevDax | None:
        """The registered dax device whose char device has these numbers."""
        for dev in self.bus.devices.values():
            if isinstance(dev, DevDax) and dev.registered and dev.devt == devt:
                return dev
        return None

    def load_drivers(self) -> None:
        """udev's modalias autoload of ``dax:t0``: device_dax, then kmem."""
        if self.drivers:
            return
        for cls in built_drivers(self.bus.name):
            drv = cls(self.kernel, self.bus)
            module_load(self.kernel, drv.name)
            self.drivers[drv.name] = drv
            driver_register(drv)
            drv.add_id_files()

    def create_dev_dax(self, region: DaxRegion, id: int, size: int) -> DevDax:
        """devm_create_dev_dax(): a device (the next free id of a dynamic
        region, ``id`` of a static one) with ``size`` bytes from the start
        of the region, registered (and probed), then its first mapping."""
        if region.static:
            if id < 0:
                raise Errno(errno.EINVAL, "a static region needs a device id")
        else:
            id = 0
            while id in region.ids:
                id += 1
            region.ids.add(id)
        dev = DevDax(self.kernel, region, id, self.alloc_minor())
        try:
            if size:
                dev.alloc_range(region.start, size)
        except Errno:
            if dev.dyn_id:
                region.ids.discard(id)
            self.free_minor(dev.minor)
            raise
        region.devices.append(dev)
        first_time = not self.drivers
        device_add(dev)
        if dev.ranges:
            dev.register_mapping(dev.ranges[0])
        if first_time:
            request_module(self.kernel, "dax:t0", self.load_drivers)
        return dev

    def unregister_dev_dax(self, dev: DevDax) -> None:
        """unregister_dev_dax() and the release that follows: mappings, the
        device (unbinding it), its ranges, its id and minor."""
        for rng in reversed(dev.ranges):
            dev.unregister_mapping(rng)
        dev.live = False
        device_del(dev)
        while dev.ranges:
            dev.trim_range()
        if dev.dyn_id and dev.id >= 0:
            dev.region.ids.discard(dev.id)
            dev.id = -1
        if dev in dev.region.devices:
            dev.region.devices.remove(dev)
        self.free_minor(dev.minor)
