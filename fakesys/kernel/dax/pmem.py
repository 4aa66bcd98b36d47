"""``dax_pmem`` (drivers/dax/pmem.c): binds an nd dax claim and publishes a
static dax region with one device over the namespace's data area.
"""

from __future__ import annotations

import errno

from fakesys.errors import Errno
from fakesys.kernel.base.core import Device, Driver
from fakesys.kernel.dax.bus import DAX_REGION_GROUP, DaxRegion
from fakesys.kernel.nvdimm.bus import ND_DEVICE_DAX_PMEM


class DaxPmemDriver(Driver):
    name = "dax_pmem"
    type_mask = 1 << ND_DEVICE_DAX_PMEM

    def probe(self, dev: Device) -> None:
        from fakesys.kernel.nvdimm.dax_devs import Dax
        from fakesys.kernel.nvdimm.pmem import common_probe, setup_pfn
        assert isinstance(dev, Dax)
        ns = common_probe(dev)
        sb = setup_pfn(dev, ns)
        start = sb.data_resource(ns.res_start)
        size = sb.data_size(ns.res_size)
        region = dev.region
        dax_region = DaxRegion(region.id, start, size, sb.effective_align(),
                               region.target_node(), static=True, host=dev)
        dev.dax_region = dax_region
        dev.groups.append(DAX_REGION_GROUP)
        dev.refresh_group(DAX_REGION_GROUP)
        try:
            dax_region.devices_created = self.kernel.dax.create_dev_dax(
                dax_region, ns.id if hasattr(ns, "id") else 0, start, size, region.numa_node())
        except Errno:
            self.remove(dev)
            raise

    def remove(self, dev: Device) -> None:
        region = getattr(dev, "dax_region", None)
        if region is None:
            return
        for dev_dax in list(region.devices):
            self.kernel.dax.remove_dev_dax(dev_dax)
        if dev.kobj is not None:
            dev.kobj.remove("dax_region")
        dev.groups.remove(DAX_REGION_GROUP)
        dev.dax_region = None
        dev.sb = None
