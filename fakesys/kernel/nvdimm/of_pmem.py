"""Device-tree pmem (drivers/nvdimm/of_pmem.c): ``pmem-region`` nodes.

Each node becomes a platform device when the tree is populated, named as
of_device_make_bus_id() names nodes with a translatable ``reg``: the first
address in hex, a dot, the node name without its unit address
(``pmem@100000000`` -> ``100000000.pmem``), under /sys/devices/platform.
The ``of_pmem`` driver (matched through its OF table: ``pmem-region`` and
``pmem-region-v2``) registers an nd bus whose provider is that device
name, then a region per ``reg`` entry: ND_REGION_PAGEMAP, on the device's
node (numa and target alike), label-less.  A node with the ``volatile``
property gets nd_volatile regions; any other gets pmem regions with
ND_REGION_PERSIST_MEMCTRL (``persistence_domain`` reads
``memory_controller``).
"""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING

from fakesys.errors import Errno
from fakesys.kernel.base.core import Device, device_add
from fakesys.kernel.base.platform import OfNode, PlatformDevice
from fakesys.kernel.nvdimm.bus import BusProviderDriver, libnvdimm
from fakesys.kernel.e820 import PmemRange
from fakesys.kernel.nvdimm.ramdax import register_pmem_drivers
from fakesys.kernel.nvdimm.region import RegionDesc, region_create
from fakesys.sysfs.tree import Dir, File, Link

if TYPE_CHECKING:
    from fakesys.kernel.kernel import Kernel

OF_MATCH_TABLE = ("pmem-region", "pmem-region-v2")


class OfPmemDriver(BusProviderDriver):
    """``of_pmem`` (module of_pmem)."""

    name = "of_pmem"
    module = "of_pmem"
    of_match_table = OF_MATCH_TABLE

    def probe(self, dev: Device) -> None:
        assert isinstance(dev, PlatformDevice)
        node = dev.of_node
        if node is None:
            raise Errno(errno.ENXIO, f"{dev.name} has no device-tree node")
        bus = libnvdimm(self.kernel).bus_register(dev, dev.id_name)
        dev.driver_data = bus
        volatile = "volatile" in node.properties
        for rng in dev.resources:
            region_create(bus, RegionDesc(start=rng.start, size=rng.size, numa_node=dev.numa,
                                          target_node=dev.numa, pagemap=True, media=rng.store,
                                          volatile=volatile, persist_memctrl=not volatile))


def bus_id(node: OfNode, first_address: int) -> str:
    """of_device_make_bus_id() for a node directly below the root."""
    return f"{first_address:x}.{node.short_name}"


def _fdt_node_dir(kernel: "Kernel", node: OfNode, ranges: list[PmemRange]) -> Dir:
    """/sys/firmware/devicetree/base/NODE with the node's properties as the
    flattened tree holds them (strings NUL-terminated, cells big-endian,
    #address-cells = #size-cells = 2)."""
    base = kernel.sys.mkdir("firmware").mkdir("devicetree").mkdir("base")
    d = base.mkdir(node.name)
    props: dict[str, bytes] = {
        "name": node.short_name.encode() + b"\0",
        "compatible": b"".join(c.encode() + b"\0" for c in node.compatible),
        "reg": b"".join(struct.pack(">QQ", r.start, r.size) for r in ranges),
    }
    for key, value in node.properties.items():
        if key == "numa-node-id":
            props[key] = struct.pack(">I", value)
        else:
            props[key] = b"" if value is True else bytes(value)
    for key in sorted(props):
        if d.get(key) is None:
            d.add(File(key, 0o444, lambda v=props[key]: v))
    return d


def of_pmem_populate(kernel: "Kernel", node: OfNode, ranges: list[PmemRange],
                     driver_override: str | None = None) -> PlatformDevice:
    """of_platform_populate() for one ``pmem-region`` node whose ``reg`` is
    ``ranges``, then the drivers (of_pmem, and ramdax where the kernel has
    it) as their modules load."""
    numa = node.properties.get("numa-node-id", -1)
    dev = PlatformDevice(kernel, bus_id(node, ranges[0].start), numa_node=numa, of_node=node,
                         resources=ranges)
    dev.driver_override = driver_override or None
    device_add(dev, probe=False)
    dev.kobj.add(Link("of_node", _fdt_node_dir(kernel, node, ranges)))
    register_pmem_drivers(kernel, dev, OfPmemDriver)
    return dev
