"""dax_hmem (drivers/dax/hmem/): "specific purpose" memory as dax regions.

Firmware marks some memory EFI_MEMORY_SP; the kernel keeps it out of the
page allocator as ``Soft Reserved``.  Each such range becomes a platform
device ``hmem.N`` (N: a memregion id, the id space nd regions and CXL
regions draw from too) whose ``numa_node`` is the range's target node (or
the online node the firmware maps it to).  The ``hmem`` platform driver
(module dax_hmem) publishes a dynamic dax region over the range (region id
N, 2 MiB align) with one device ``daxN.0`` covering all of it, or an empty
one when the module parameter ``region_idle`` is set.

Versions:

* 6.1: the built-in half (hmem/device.c) registers ``hmem.N`` at boot; the
  regions carry no KMEM flag, so ``daxN.0`` binds to device_dax.
* 6.3+: ranges are only recorded at boot; dax_hmem's ``hmem_platform``
  driver, bound to the single ``hmem_platform.0`` device, creates the
  ``hmem.N`` devices, and the regions are KMEM regions (kmem binds them,
  unless ``region_idle``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fakesys.kernel.base.core import Device, device_add, device_del
from fakesys.kernel.base.driver import Driver, driver_register
from fakesys.kernel.base.module import module_load
from fakesys.kernel.base.platform import PlatformDevice, platform_bus
from fakesys.kernel.dax.bus import PMD_SIZE, alloc_dax_region, dax_region_unregister
from fakesys.kernel.memregion import memregion_alloc, memregion_free

if TYPE_CHECKING:
    from fakesys.kernel.kernel import Kernel


@dataclass
class SoftReserved:
    """A range the firmware marked EFI_MEMORY_SP (or an e820 entry of type
    0xefffffff), as hmem_register_resource() records it: the proximity
    domain's node and, when the firmware maps it to another online node,
    that node (``numa_node``; None: the target)."""

    start: int
    size: int
    target_node: int = 0
    numa_node: int | None = None


class HmemDevice(PlatformDevice):
    """``hmem.N``: the platform device of one soft-reserved range."""

    def __init__(self, kernel: "Kernel", id: int, info: SoftReserved) -> None:
        numa = info.target_node if info.numa_node is None else info.numa_node
        super().__init__(kernel, "hmem", id, numa_node=numa)
        self.id = id
        self.info = info
        self.dax_region = None


class HmemDriver(Driver):
    """The ``hmem`` platform driver: dax_hmem_probe()."""

    name = "hmem"
    module = "dax_hmem"

    def probe(self, dev: Device) -> None:
        assert isinstance(dev, HmemDevice)
        hmem = self.kernel.hmem
        idle = hmem.region_idle()
        kmem = self.kernel.version.hmem_defaults_to_kmem and not idle
        region = alloc_dax_region(self.kernel, dev, dev.id, dev.info.start, dev.info.size,
                                  dev.info.target_node, PMD_SIZE, kmem=kmem)
        try:
            self.kernel.dax.create_dev_dax(region, -1, 0 if idle else dev.info.size)
        except Exception:
            dax_region_unregister(region)
            raise

    def remove(self, dev: Device) -> None:
        region = getattr(dev, "dax_region", None)
        if region is not None:
            dax_region_unregister(region)


class HmemPlatformDriver(Driver):
    """``hmem_platform`` (6.3+): creates an ``hmem.N`` per recorded range."""

    name = "hmem_platform"
    module = "dax_hmem"

    def probe(self, dev: Device) -> None:
        hmem = self.kernel.hmem
        for info in hmem.ranges:
            hmem.register_device(info, owner=dev)

    def remove(self, dev: Device) -> None:
        self.kernel.hmem.unregister_devices(owner=dev)


class Hmem:
    """The recorded soft-reserved ranges and the devices made of them."""

    def __init__(self, kernel: "Kernel") -> None:
        self.kernel = kernel
        self.ranges: list[SoftReserved] = []
        self.devices: list[tuple[HmemDevice, Device | None]] = []  # (device, owner)
        self.module = None
        self.platform: PlatformDevice | None = None

    def region_idle(self) -> bool:
        return bool(self.module.params.get("region_idle")) if self.module is not None else False

    def register_device(self, info: SoftReserved, owner: Device | None = None) -> HmemDevice:
        """hmem_register_device(): a memregion id and a platform device ``hmem.N``."""
        id = memregion_alloc(self.kernel)
        dev = HmemDevice(self.kernel, id, info)
        self.devices.append((dev, owner))
        device_add(dev)
        if not self.kernel.version.hmem_platform_device:
            # 6.1 gives the platform device the range as its resource, which
            # platform_device_add() inserts around "Soft Reserved"
            dev.res = self.kernel.iomem.insert(dev.name, info.start, info.start + info.size - 1)
        return dev

    def unregister_devices(self, owner: Device) -> None:
        for dev, by in list(self.devices):
            if by is owner:
                self.devices.remove((dev, by))
                device_del(dev)
                if getattr(dev, "res", None) is not None:
                    self.kernel.iomem.remove(dev.res)
                memregion_free(self.kernel, dev.id)

    def load_module(self) -> None:
        """dax_hmem loaded (udev's modalias autoload of ``platform:hmem*``)."""
        if self.module is not None:
            return
        self.module = module_load(self.kernel, "dax_hmem")
        self.module.param_bool("region_idle", False)
        bus = platform_bus(self.kernel)
        if self.kernel.version.hmem_platform_device:
            driver_register(HmemPlatformDriver(self.kernel, bus))
        driver_register(HmemDriver(self.kernel, bus))


def hmem_init(kernel: "Kernel", ranges: list[SoftReserved]) -> Hmem:
    """Boot: record the soft-reserved ranges (hmem_init/hmem_register_resource),
    create their devices (6.1) or the ``hmem_platform.0`` device (6.3+), then
    load dax_hmem, whose drivers bind them."""
    hmem = getattr(kernel, "hmem", None)
    if hmem is None:
        hmem = kernel.hmem = Hmem(kernel)
    new = [r for r in ranges]
    hmem.ranges += new
    for r in new:   # e820/EFI "specific purpose" memory, kept out of the page allocator
        if kernel.iomem.find(r.start, r.start + r.size - 1, "Soft Reserved") is None:
            kernel.iomem.insert("Soft Reserved", r.start, r.start + r.size - 1)
    if kernel.version.hmem_platform_device:
        if hmem.platform is None:
            hmem.platform = PlatformDevice(kernel, "hmem_platform", 0)
            device_add(hmem.platform)
        elif hmem.platform.driver is not None:
            for info in new:
                hmem.register_device(info, owner=hmem.platform)
    else:
        for info in new:
            hmem.register_device(info)
    hmem.load_module()
    return hmem
