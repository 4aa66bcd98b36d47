"""BTT devices ``bttR.J`` (btt_devs.c): the sector-mode claim of a namespace."""

from __future__ import annotations

import errno

from fakesys.errors import Errno
from fakesys.kernel.base.core import RO, RW, AttributeGroup, DeviceType
from fakesys.kernel.nvdimm.bus import ND_DEVICE_GROUP, ND_NUMA_GROUP
from fakesys.kernel.nvdimm.claim import Claim, claim_accepts, size_select_show
from fakesys.kernel.nvdimm.btt import SUPPORTED_LBASIZES
from fakesys.kernel.parse import kstrtoul


class Btt(Claim):
    kind = "btt"
    ids_attr = "btt_ids"

    def __init__(self, region, id: int, ndns=None) -> None:
        self.lbasize = 0
        self.geometry = None  # set while bound
        super().__init__(region, id, ndns)
        self.type = BTT_TYPE
        self.nd_type = region.nstype()

    def accepts(self, cclass: int) -> bool:
        return claim_accepts("btt", cclass)

    def reset(self) -> None:
        super().reset()
        self.lbasize = 0

    def sector_size_store(self, buf: str) -> None:
        if self.driver is not None:
            raise Errno(errno.EBUSY, f"{self.name} is active")
        size = kstrtoul(buf, 0)
        if size not in SUPPORTED_LBASIZES:
            raise Errno(errno.EINVAL, f"unsupported sector size {size}")
        self.lbasize = size

    def size_show(self) -> str:
        if self.driver is None or self.geometry is None:
            raise Errno(errno.ENXIO, "not enabled")
        return f"{self.geometry.size}\n"


BTT_GROUP = AttributeGroup([
    RW("sector_size", lambda b: size_select_show(b.lbasize, SUPPORTED_LBASIZES), Btt.sector_size_store),
    RW("namespace", Btt.namespace_show, Btt.namespace_store),
    RW("uuid", Btt.uuid_show, Btt.uuid_store),
    RO("size", Btt.size_show),
    RO("log_zero_flags", lambda b: "Y\n"),
])

BTT_TYPE = DeviceType("nd_btt", [ND_DEVICE_GROUP, BTT_GROUP, ND_NUMA_GROUP])


def create_seed(region) -> Btt:
    return Btt.create_seed(region)
