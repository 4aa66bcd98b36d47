"""virtio-pmem (drivers/nvdimm/virtio_pmem.c, nd_virtio.c): a virtio
device whose configuration space names a range of guest physical memory
the host backs with a file.

The ``virtio_pmem`` driver registers an nd bus with provider
``virtio-pmem`` under the virtio device and one label-less region over
the range: ND_REGION_PAGEMAP and ND_REGION_ASYNC, with the flush going
to the host over the virtqueue (``async_pmem_flush``).  The region has
no mappings, so ``deep_flush`` is hidden and its namespace is the io
namespace over the whole range.  The node the region belongs to is the
one of the memory block the range would be hot-added to; the target node
falls back to it when the address has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fakesys.kernel.base.core import Device
from fakesys.kernel.base.driver import driver_register
from fakesys.kernel.nvdimm.bus import BusProviderDriver, libnvdimm
from fakesys.kernel.nvdimm.region import RegionDesc, region_create
from fakesys.kernel.virtio import (
    VIRTIO_DEV_ANY_ID, VIRTIO_ID_PMEM, VirtioDevice, pci_function_dir, register_virtio_device,
    virtio_bus,
)

if TYPE_CHECKING:
    from fakesys.kernel.kernel import Kernel

# What QEMU 7.2's virtio-pmem-pci and the 6.1 driver end up with: ring
# features INDIRECT_DESC (28) and EVENT_IDX (29), VERSION_1 (32) and
# RING_RESET (40); no VIRTIO_PMEM_F_SHMEM_REGION.
QEMU_FEATURES = (1 << 28) | (1 << 29) | (1 << 32) | (1 << 40)


class VirtioPmemDriver(BusProviderDriver):
    """``virtio_pmem`` (module virtio_pmem)."""

    name = "virtio_pmem"
    module = "virtio_pmem"
    id_table = ((VIRTIO_ID_PMEM, VIRTIO_DEV_ANY_ID),)

    def probe(self, dev: Device) -> None:
        assert isinstance(dev, VirtioDevice)
        cfg = dev.config
        bus = libnvdimm(self.kernel).bus_register(dev, "virtio-pmem")
        dev.driver_data = bus
        numa = cfg["numa_node"]
        target = cfg["target_node"] if cfg["target_node"] != -1 else numa
        region_create(bus, RegionDesc(start=cfg["start"], size=cfg["size"], numa_node=numa,
                                      target_node=target, pagemap=True, async_flush=True,
                                      media=cfg["store"]))


@dataclass
class VirtioPmemConfig:
    """struct virtio_pmem_config (``start``, ``size``), the host's file
    behind the range (``store``), and the nodes the platform puts the
    device and its range on (``target_node`` -1: the device's)."""

    start: int
    size: int
    store: object
    numa_node: int = -1
    target_node: int = 0


def virtio_pmem_add(kernel: "Kernel", pci: str, index: int, config: VirtioPmemConfig) -> VirtioDevice:
    """A virtio-pmem-pci function found at boot, and its driver (module load)."""
    parent = pci_function_dir(kernel, pci)
    dev = VirtioDevice(kernel, index, parent, VIRTIO_ID_PMEM, features=QEMU_FEATURES,
                       config=vars(config))
    bus = virtio_bus(kernel)
    if dev.name in bus.devices:
        raise ValueError(f"two virtio devices named {dev.name}: give each virtio-pmem bus its own index")
    register_virtio_device(kernel, dev)
    if "virtio_pmem" not in bus.drivers:
        driver_register(VirtioPmemDriver(kernel, bus))
    return dev
