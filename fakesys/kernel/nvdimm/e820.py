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

from typing import TYPE_CHECKING

from fakesys.kernel.base.core import Device, device_add
from fakesys.kernel.base.platform import PlatformDevice
from fakesys.kernel.e820 import PmemRange, add_legacy_range, legacy_ranges
from fakesys.kernel.nvdimm.bus import BusProviderDriver, libnvdimm
from fakesys.kernel.nvdimm.ramdax import register_pmem_drivers
from fakesys.kernel.nvdimm.region import RegionDesc, region_create

if TYPE_CHECKING:
    from fakesys.kernel.kernel import Kernel


class E820PmemDriver(BusProviderDriver):
    """``e820_pmem`` (module nd_e820): one nd bus, one region per legacy range."""

    name = "e820_pmem"
    module = "nd_e820"

    def probe(self, dev: Device) -> None:
        assert isinstance(dev, PlatformDevice)
        nd = libnvdimm(self.kernel)
        bus = nd.bus_register(dev, "e820")
        dev.driver_data = bus
        for rng in legacy_ranges(self.kernel):
            region_create(bus, RegionDesc(start=rng.start, size=rng.size, numa_node=rng.numa_node,
                                          target_node=rng.target_node, pagemap=True, media=rng.store))


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
