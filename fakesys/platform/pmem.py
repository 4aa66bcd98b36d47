"""Persistent memory without DIMMs behind it, as firmware describes it:
e820 type-12 ranges (``memmap=nn!ss``), a virtio-pmem device's config
space, a device-tree ``pmem-region`` node.

Each provider checks what only the topology can get wrong, makes the
stores for the ranges (RAM where the range is RAM: a memmap= carve-out, a
volatile node, a range meant for ramdax) and hands the kernel the
descriptor its entry point takes.
"""

from __future__ import annotations

from fakesys.kernel.base.platform import OfNode, platform_bus
from fakesys.kernel.e820 import PmemRange
from fakesys.kernel.nvdimm.e820 import e820_pmem_register
from fakesys.kernel.nvdimm.of_pmem import bus_id, of_pmem_populate
from fakesys.kernel.nvdimm.virtio_pmem import VirtioPmemConfig, virtio_pmem_add
from fakesys.kernel.kernel import Kernel
from fakesys.platform.stores import Stores
from fakesys.platform.topology import E820BusSpec, OfPmemSpec, PmemRangeSpec, VirtioPmemSpec


def _check_ramdax(kernel: Kernel, ranges: list[PmemRangeSpec]) -> None:
    if any(r.ramdax for r in ranges) and not kernel.version.has_ramdax:
        raise ValueError(f"ranges meant for ramdax need kernel 6.19 or later, not {kernel.version}")


def e820(kernel: Kernel, stores: Stores, spec: E820BusSpec) -> None:
    """The e820 table's legacy pmem entries: one ``e820_pmem`` for all."""
    _check_ramdax(kernel, spec.ranges)
    if platform_bus(kernel).devices.get("e820_pmem") is not None:
        raise ValueError("only one e820 bus per machine: list all ranges in it")
    ranges = [PmemRange(r.start, r.size, r.numa_node, r.target_node,
                        stores.store(f"e820-{r.start:x}.pmem", r.size, ram=True), r.ramdax)
              for r in spec.ranges]                 # memmap=: RAM
    e820_pmem_register(kernel, ranges, spec.driver_override)


def virtio_pmem(kernel: Kernel, stores: Stores, spec: VirtioPmemSpec) -> None:
    """A virtio-pmem-pci function; the host backs its range with a file."""
    store = stores.store(f"virtio-pmem-{spec.start:x}.pmem", spec.size)
    config = VirtioPmemConfig(spec.start, spec.size, store, spec.numa_node, spec.target_node)
    virtio_pmem_add(kernel, spec.pci, spec.index, config)


def of_node(spec: OfPmemSpec) -> OfNode:
    """The ``pmem-region`` node with the properties the spec sets."""
    props: dict = {}
    if spec.volatile:
        props["volatile"] = True
    if spec.numa_node >= 0:
        props["numa-node-id"] = spec.numa_node
    return OfNode(spec.node, [spec.compatible], props)


def of_pmem(kernel: Kernel, stores: Stores, spec: OfPmemSpec) -> None:
    """A device-tree ``pmem-region`` node, one range per ``reg`` entry."""
    _check_ramdax(kernel, spec.ranges)
    node = of_node(spec)
    name = bus_id(node, spec.ranges[0].start)
    if name in platform_bus(kernel).devices:
        raise ValueError(f"two device-tree nodes make platform device {name}")
    # a volatile region, or a RAM carve-out meant for ramdax, is RAM
    ranges = [PmemRange(r.start, r.size, spec.numa_node, spec.numa_node,
                        stores.store(f"of-{r.start:x}.pmem", r.size, ram=spec.volatile or r.ramdax),
                        r.ramdax)
              for r in spec.ranges]
    of_pmem_populate(kernel, node, ranges, spec.driver_override)
