"""``dax_pmem`` (drivers/dax/pmem.c): binds an nd dax claim and publishes a
static dax region with one device over the namespace's data area.

The region id is the nd region's, the device id the namespace's (so the
nd claim ``dax0.1`` of ``namespace0.0`` has the dax device ``dax0.0``),
the align is the info block's.
"""

from __future__ import annotations

import errno

from fakesys.errors import Errno
from fakesys.kernel.base.core import Device
from fakesys.kernel.base.driver import Driver, module_driver
from fakesys.kernel.dax.bus import alloc_dax_region, dax_region_unregister
from fakesys.kernel.nvdimm.bus import ND_DEVICE_DAX_PMEM
from fakesys.kernel.nvdimm.dax_devs import Dax
from fakesys.kernel.nvdimm.pmem import common_probe, setup_pfn
from fakesys.kernel.nvdimm.region import iomem_wrapped


@module_driver
class DaxPmemDriver(Driver):
    name = "dax_pmem"
    bus_name = "nd"
    type_mask = 1 << ND_DEVICE_DAX_PMEM

    def probe(self, dev: Device) -> None:
        assert isinstance(dev, Dax)
        ns = common_probe(dev)
        sb = setup_pfn(dev, ns)
        start = sb.data_resource(ns.res_start)
        size = sb.data_size(ns.res_size)
        # the info block and memmap reserve in front of the data: a
        # request of its own, named after the namespace (the data is daxX.Y)
        region = dev.region
        wrapped = iomem_wrapped(region)
        if not wrapped:
            head = self.kernel.iomem.request_region(ns.res_start, start - ns.res_start, ns.name)
            if head is None:
                raise Errno(errno.EBUSY, f"{ns.name}: could not reserve metadata")
            dev.iomem_res = head
        dax_region = alloc_dax_region(self.kernel, dev, region.id, start, size, region.target_node(),
                                      sb.effective_align(), static=True)
        dax_region.persistent_id = str(sb.uuid)
        dax_region.iomem_wrapped = wrapped
        try:
            self.kernel.dax.create_dev_dax(dax_region, getattr(ns, "id", 0), size)
        except Errno:
            self.remove(dev)
            raise

    def remove(self, dev: Device) -> None:
        region = getattr(dev, "dax_region", None)
        if region is not None:
            dax_region_unregister(region)
        head = dev.iomem_res
        if head is not None:
            self.kernel.iomem.release(head)
            dev.iomem_res = None
        dev.sb = None
