"""DAX devices ``daxR.J`` (dax_devs.c): the devdax claim, a pfn with another signature."""

from __future__ import annotations

from fakesys.kernel.base.core import DeviceType
from fakesys.kernel.nvdimm.bus import ND_DEVICE_DAX_PMEM, ND_DEVICE_GROUP, ND_NUMA_GROUP
from fakesys.kernel.nvdimm.pfn_devs import PFN_GROUP, Pfn


class Dax(Pfn):
    kind = "dax"
    ids_attr = "dax_ids"
    dax = True

    def __init__(self, region, id: int, ndns=None) -> None:
        self.dax_region = None  # the dax-bus region while bound to dax_pmem
        super().__init__(region, id, ndns)

    def device_type(self) -> DeviceType:
        return DAX_TYPE

    def modalias_type(self, region) -> int:
        return ND_DEVICE_DAX_PMEM


DAX_TYPE = DeviceType("nd_dax", [ND_DEVICE_GROUP, PFN_GROUP, ND_NUMA_GROUP])


def create_seed(region) -> Dax:
    return Dax.create_seed(region)
