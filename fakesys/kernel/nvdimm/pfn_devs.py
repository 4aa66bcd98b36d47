"""PFN devices ``pfnR.J`` (pfn_devs.c): the fsdax claim of a namespace.

The info block written at bind time (pfn.py) decides where the data area
starts; ``resource`` and ``size`` show that area while the device is bound.
"""

from __future__ import annotations

import errno

from fakesys.errors import Errno
from fakesys.kernel.base.core import ADMIN_RO, RO, RW, AttributeGroup, DeviceType
from fakesys.kernel.nvdimm import pfn
from fakesys.kernel.nvdimm.bus import ND_DEVICE_GROUP, ND_NUMA_GROUP
from fakesys.kernel.nvdimm.claim import Claim, claim_accepts
from fakesys.kernel.parse import kstrtoul

MODES = {pfn.PfnMode.NONE: "none", pfn.PfnMode.RAM: "ram", pfn.PfnMode.PMEM: "pmem"}


class Pfn(Claim):
    kind = "pfn"
    ids_attr = "pfn_ids"
    dax = False

    def __init__(self, region, id: int, ndns=None) -> None:
        self.mode = pfn.PfnMode.NONE
        self.align = pfn.default_alignment()
        self.sb: pfn.PfnSuperblock | None = None  # the info block while bound
        super().__init__(region, id, ndns)
        self.type = self.device_type()
        self.nd_type = self.modalias_type(region)

    def device_type(self) -> DeviceType:
        return PFN_TYPE

    def modalias_type(self, region) -> int:
        return region.nstype()

    def accepts(self, cclass: int) -> bool:
        return claim_accepts(self.kind, cclass)

    def reset(self) -> None:
        super().reset()
        self.mode = pfn.PfnMode.NONE

    def mode_store(self, buf: str) -> None:
        """mode_store(): compares only len-1 characters, so prefixes match."""
        if self.driver is not None:
            raise Errno(errno.EBUSY, f"{self.name} is active")
        n = max(getattr(buf, "count", len(buf) + 1) - 1, 0)
        for mode, name in ((pfn.PfnMode.PMEM, "pmem"), (pfn.PfnMode.RAM, "ram"), (pfn.PfnMode.NONE, "none")):
            if _strncmp(buf, name + "\n", n) or _strncmp(buf, name, n):
                self.mode = mode
                return
        raise Errno(errno.EINVAL, f"unknown mode {buf!r}")

    def align_store(self, buf: str) -> None:
        if self.driver is not None:
            raise Errno(errno.EBUSY, f"{self.name} is active")
        val = kstrtoul(buf, 0)
        if val not in pfn.supported_alignments():
            raise Errno(errno.EINVAL, f"unsupported alignment {val}")
        self.align = val

    def _bound_sb(self) -> pfn.PfnSuperblock:
        if self.driver is None or self.sb is None or self.ndns is None:
            raise Errno(errno.ENXIO, "not enabled")
        return self.sb

    def resource_show(self) -> str:
        sb = self._bound_sb()
        return f"{sb.data_resource(self.ndns.res_start):#x}\n"

    def size_show(self) -> str:
        sb = self._bound_sb()
        return f"{sb.data_size(self.ndns.res_size)}\n"


def _strncmp(buf: str, target: str, n: int) -> bool:
    """C ``strncmp(buf, target, n) == 0``: stops at the first NUL."""
    a, b = buf + "\0", target + "\0"
    for i in range(n):
        ca = a[i] if i < len(a) else "\0"
        cb = b[i] if i < len(b) else "\0"
        if ca != cb:
            return False
        if ca == "\0":
            return True
    return True


PFN_GROUP = AttributeGroup([
    RW("mode", lambda p: f"{MODES[p.mode]}\n", Pfn.mode_store),
    RW("namespace", Pfn.namespace_show, Pfn.namespace_store),
    RW("uuid", Pfn.uuid_show, Pfn.uuid_store),
    RW("align", lambda p: f"{p.align}\n", Pfn.align_store),
    ADMIN_RO("resource", Pfn.resource_show),
    RO("size", Pfn.size_show),
    RO("supported_alignments", lambda p: "".join(f"{a} " for a in pfn.supported_alignments()) + "\n"),
])

PFN_TYPE = DeviceType("nd_pfn", [ND_DEVICE_GROUP, PFN_GROUP, ND_NUMA_GROUP])


def create_seed(region) -> Pfn:
    return Pfn.create_seed(region)
