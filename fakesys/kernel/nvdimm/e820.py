"""Legacy persistent memory: the ``e820_pmem`` platform device and the
``e820_pmem`` driver of module ``nd_e820`` (drivers/nvdimm/e820.c, with
the device side of arch/x86/kernel/pmem.c).

The firmware's E820 type-12 ranges, or RAM the command line turned into
them (``memmap=nn!ss``), are iomem resources of the kind "persistent
memory (legacy)".  If there is at least one, x86 registers a single
platform device ``e820_pmem`` (no instance id, no resources of its own).
Its driver registers an nd bus with provider ``e820`` and no command
handler, and one region per range: label-less (no DIMMs, no interleave
set), ND_REGION_PAGEMAP, whose only namespace is the io namespace
covering the whole range.  Unbinding the driver unregisters the bus with
everything on it.  The ranges themselves stay; another driver (ramdax,
through ``driver_override``) may claim them.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fakesys.kernel.base.core import Device, device_add
from fakesys.kernel.base.dd import device_attach
from fakesys.kernel.base.driver import Driver, driver_register
from fakesys.kernel.base.platform import PlatformDevice, platform_bus
from fakesys.kernel.nvdimm.bus import BusProviderDriver, libnvdimm
from fakesys.kernel.nvdimm.region import RegionDesc, region_create

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


class E820PmemDriver(BusProviderDriver):
    """``e820_pmem`` (module nd_e820): one nd bus, one region per legacy range."""

    name = "e820_pmem"
    module = "nd_e820"

    def probe(self, dev: Device) -> None:
        assert isinstance(dev, PlatformDevice)
        nd = libnvdimm(self.kernel)
        bus = nd.bus_register(dev, "e820")
        dev.drvdata = bus
        for rng in legacy_ranges(self.kernel):
            region_create(bus, RegionDesc(start=rng.start, size=rng.size, numa_node=rng.numa_node,
                                          target_node=rng.target_node, pagemap=True, media=rng.store))


def register_driver(kernel: "Kernel", drv_cls: type[Driver]) -> Driver:
    """platform_driver_register() once per boot (module load)."""
    bus = platform_bus(kernel)
    drv = bus.drivers.get(drv_cls.name)
    if drv is None:
        drv = driver_register(drv_cls(kernel, bus))
    return drv


def register_pmem_drivers(kernel: "Kernel", dev: PlatformDevice, drv_cls: type[Driver]) -> None:
    """A platform pmem provider's driver, and ramdax beside it on kernels
    that have it (it binds only through driver_override); then bind ``dev``
    as the driver core does, unless registering a driver already did."""
    register_driver(kernel, drv_cls)
    if kernel.version.has_ramdax:
        from fakesys.kernel.nvdimm.ramdax import RamdaxDriver  # (ramdax imports this module)
        register_driver(kernel, RamdaxDriver)
    if dev.driver is None:
        device_attach(dev)


def e820_pmem_register(kernel: "Kernel", ranges: list[PmemRange],
                       driver_override: str | None = None) -> PlatformDevice:
    """The firmware's legacy ranges at boot (e820__reserve_resources_late,
    register_e820_pmem): the resources, the ``e820_pmem`` device (with the
    override a boot-time tool such as driverctl would set), then the
    drivers that may bind it (nd_e820, and ramdax where the kernel has it,
    loaded but binding nothing by itself)."""
    for rng in ranges:
        add_legacy_range(kernel, rng)
    dev = PlatformDevice(kernel, "e820_pmem")
    dev.driver_override = driver_override or None
    device_add(dev, probe=False)
    register_pmem_drivers(kernel, dev, E820PmemDriver)
    return dev
