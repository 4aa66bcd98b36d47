"""The dax bus (drivers/dax/bus.c): dax regions and ``daxR.N`` devices.

This is the part the nd dax claim needs: a static dax region published on
the claiming device (``dax_region/``) and one dev_dax child on the dax bus,
bound to ``device_dax``.  Dynamic regions (hmem) build on the same objects.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fakesys.errors import Errno
from fakesys.kernel.base.core import (
    ADMIN_RO, RO, RW, WO, Attribute, AttributeGroup, Bus, Device, DeviceType, Driver,
)

if TYPE_CHECKING:
    from fakesys.kernel.kernel import Kernel


@dataclass
class DaxRegion:
    """struct dax_region: an address range dax devices are carved from."""

    id: int
    start: int
    size: int
    align: int
    target_node: int
    static: bool = True
    host: Device | None = None
    devices: list["DevDax"] = field(default_factory=list)
    seed: Device | None = None


def _region_visible(dev: Device, a: Attribute) -> int:
    region = dev.dax_region
    if region is not None and region.static and a.name in ("available_size", "create", "seed", "delete"):
        return 0
    return a.mode


DAX_REGION_GROUP = AttributeGroup([
    RO("id", lambda d: f"{d.dax_region.id}\n"),
    RO("size", lambda d: f"{d.dax_region.size}\n"),
    ADMIN_RO("align", lambda d: f"{d.dax_region.align}\n"),
    RO("available_size", lambda d: f"{d.dax_region.size - sum(x.size for x in d.dax_region.devices)}\n"),
    RO("seed", lambda d: f"{d.dax_region.seed.name}\n" if d.dax_region.seed else "\n"),
    WO("create", lambda d, b: _not_supported()),
    WO("delete", lambda d, b: _not_supported()),
], name="dax_region", is_visible=_region_visible)


def _not_supported() -> None:
    raise Errno(errno.EOPNOTSUPP, "static dax region")


class DaxBus(Bus):
    def __init__(self, kernel: "Kernel") -> None:
        super().__init__(kernel, "dax")

    def match(self, dev: Device, drv: Driver) -> bool:
        return isinstance(dev, DevDax) and isinstance(drv, DaxDriver)

    def uevent_env(self, dev: Device) -> list[str]:
        return ["MODALIAS=dax:t0"]


class DaxMapping(Device):
    """``mappingN``: one range of a dev_dax (dax_mapping device)."""

    pm = True

    def __init__(self, kernel: "Kernel", parent: "DevDax", index: int, start: int, end: int,
                 page_offset: int) -> None:
        super().__init__(kernel, f"mapping{index}", parent)
        self.start, self.end, self.page_offset = start, end, page_offset
        self.groups = [MAPPING_GROUP]


MAPPING_GROUP = AttributeGroup([
    ADMIN_RO("start", lambda m: f"{m.start:#x}\n"),
    ADMIN_RO("end", lambda m: f"{m.end:#x}\n"),
    ADMIN_RO("page_offset", lambda m: f"{m.page_offset:#x}\n"),
])


class DevDax(Device):
    """``daxR.N`` on the dax bus, char device /dev/daxR.N."""

    pm = True

    def __init__(self, kernel: "Kernel", region: DaxRegion, id: int, start: int, size: int,
                 numa_node: int) -> None:
        dax = kernel.dax
        super().__init__(kernel, f"dax{region.id}.{id}", region.host, bus=dax.bus,
                         devt=(kernel.chrdev_major("dax"), dax.alloc_minor()))
        self.type = DEV_DAX_TYPE
        self.region = region
        self.id = id
        self.ranges = [(start, size)] if size else []
        self.align = region.align
        self._numa_node = numa_node

    @property
    def size(self) -> int:
        return sum(s for _, s in self.ranges)

    def visible(self, a: Attribute) -> int:
        if self.region.static:
            if a.name == "mapping":
                return 0
            if a.name in ("align", "size"):
                return 0o444
        return a.mode

    def resource_show(self) -> str:
        return f"{self.ranges[0][0] if self.ranges else self.region.start:#x}\n"


DEV_DAX_GROUP = AttributeGroup([
    RO("modalias", lambda d: "dax:t0\n"),
    RW("size", lambda d: f"{d.size}\n", lambda d, b: _not_supported()),
    WO("mapping", lambda d, b: _not_supported()),
    RO("target_node", lambda d: f"{d.region.target_node}\n"),
    RW("align", lambda d: f"{d.align}\n", lambda d, b: _not_supported()),
    ADMIN_RO("resource", DevDax.resource_show),
    RO("numa_node", lambda d: f"{d._numa_node}\n"),
], is_visible=lambda d, a: d.visible(a))

DEV_DAX_TYPE = DeviceType(None, [DEV_DAX_GROUP])


class DaxDriver(Driver):
    """A dax bus driver: bind/unbind plus new_id/remove_id."""

    def __init__(self, kernel: "Kernel", bus: Bus) -> None:
        super().__init__(kernel, bus)

    def extra_files(self) -> None:
        from fakesys.sysfs.kernfs import File
        assert self.dir is not None
        self.dir.add(File("new_id", 0o200, None, lambda data: None))
        self.dir.add(File("remove_id", 0o200, None, lambda data: None))


class DeviceDaxDriver(DaxDriver):
    name = "device_dax"


class KmemDriver(DaxDriver):
    name = "kmem"

    def probe(self, dev: Device) -> None:
        raise Errno(errno.ENXIO, "kmem is not modelled yet")


class Dax:
    """The dax core's global state: bus, minors, drivers loaded on demand."""

    def __init__(self, kernel: "Kernel") -> None:
        self.kernel = kernel
        self.bus = kernel.register_bus(DaxBus(kernel))
        self.minors: set[int] = set()
        self.drivers_loaded = False

    def alloc_minor(self) -> int:
        i = 0
        while i in self.minors:
            i += 1
        self.minors.add(i)
        return i

    def free_minor(self, minor: int) -> None:
        self.minors.discard(minor)

    def load_drivers(self) -> None:
        """What udev's modalias autoload of dax:t0 does: device_dax and kmem."""
        if self.drivers_loaded:
            return
        self.drivers_loaded = True
        for cls in (DeviceDaxDriver, KmemDriver):
            drv = self.kernel.driver_register(cls(self.kernel, self.bus))
            drv.extra_files()

    def create_dev_dax(self, region: DaxRegion, id: int, start: int, size: int,
                       numa_node: int) -> DevDax:
        """devm_create_dev_dax(): the device, then its mapping children."""
        self.load_drivers()
        dev = DevDax(self.kernel, region, id, start, size, numa_node)
        region.devices.append(dev)
        self.kernel.device_add(dev, probe=False)
        for i, (s, n) in enumerate(dev.ranges):
            self.kernel.device_add(DaxMapping(self.kernel, dev, i, s, s + n - 1, 0))
        self.kernel.device_attach(dev)
        return dev

    def remove_dev_dax(self, dev: DevDax) -> None:
        self.kernel.device_del(dev)
        dev.region.devices.remove(dev)
        self.free_minor(dev.devt[1])
