"""``nd_pmem`` (drivers/nvdimm/pmem.c): block devices over namespaces.

It binds three kinds of devices: a namespace (raw mode, after checking
the media for BTT/PFN/DAX info blocks and handing the namespace to a new
claim device if one is found), a pfn device (fsdax: the disk starts after
the info block's data offset) and a btt device (sector mode).
"""

from __future__ import annotations

import errno
import logging

from fakesys.errors import Errno
from fakesys.kernel.base.core import Device, device_add
from fakesys.kernel.base.dd import defer
from fakesys.kernel.base.driver import Driver, module_driver
from fakesys.kernel.block import DiskParams, Gendisk, add_disk, del_gendisk, write_cache_group
from fakesys.kernel.nvdimm import badrange, btt, pfn
from fakesys.kernel.nvdimm.btt_devs import Btt
from fakesys.kernel.nvdimm.bus import ND_DEVICE_NAMESPACE_IO, ND_DEVICE_NAMESPACE_PMEM
from fakesys.kernel.nvdimm.claim import Claim, NamespaceMedia
from fakesys.kernel.nvdimm.dax_devs import Dax
from fakesys.kernel.nvdimm.ioctl import clear_poison
from fakesys.kernel.nvdimm.namespace import (
    CCLASS_BTT, CCLASS_BTT2, CCLASS_DAX, CCLASS_NONE, CCLASS_PFN, Namespace, NamespacePmem,
)
from fakesys.kernel.nvdimm.pfn_devs import Pfn
from fakesys.kernel.nvdimm.region import iomem_wrapped
from fakesys.kernel.sizes import PAGE_SIZE, SECTOR_SIZE

log = logging.getLogger("fakesys.kernel")


def common_probe(dev: Device) -> Namespace:
    """nvdimm_namespace_common_probe(): the namespace a device would drive."""
    if isinstance(dev, Claim):
        ns = dev.ndns
        if ns is None:
            raise Errno(errno.ENODEV, f"{dev.name} has no namespace")
        if ns.driver is not None:
            raise Errno(errno.EBUSY, f"{ns.name} is active, can't bind {dev.name}")
        if ns.claim is not dev:
            raise Errno(errno.ENXIO, "claim mismatch")
    elif isinstance(dev, Namespace):
        ns = dev
        if ns.claim is not None:
            raise Errno(errno.ENXIO, f"claimed by {ns.claim.name}")
    else:
        raise Errno(errno.ENODEV, "not a namespace or claim")
    if ns.capacity < PAGE_SIZE:
        raise Errno(errno.ENODEV, f"{ns.name} too small")
    if isinstance(ns, NamespacePmem) and ns.uuid is None:
        raise Errno(errno.ENODEV, f"{ns.name} uuid not set")
    return ns


def _oserror(e: OSError) -> Errno:
    return Errno(e.errno or errno.ENXIO, str(e))


def setup_pfn(dev: Pfn, ns: Namespace) -> pfn.PfnSuperblock:
    """nvdimm_setup_pfn(): use the info block on media or write a new one."""
    try:
        sb = pfn.setup(NamespaceMedia(ns), dax=dev.dax, uuid=dev.uuid, mode=dev.mode,
                       align=dev.align, parent_uuid=dev.parent_uuid(), ns_start=ns.res_start,
                       ns_size=ns.res_size, read_only=dev.region.ro)
    except OSError as e:
        raise _oserror(e) from None
    dev.sb = sb
    return sb


def _detect(ns: Namespace) -> Claim | None:
    """nd_btt_probe / nd_pfn_probe / nd_dax_probe on an unclaimed namespace.

    Raises Errno(EOPNOTSUPP) for a pfn or dax block this kernel cannot use:
    the namespace then stays disabled (nd_pmem_probe fails).
    """
    if ns.force_raw:
        return None
    region = ns.region
    media = NamespaceMedia(ns)
    parent = ns.uuid if isinstance(ns, NamespacePmem) else None
    if ns.claim_class in (CCLASS_NONE, CCLASS_BTT, CCLASS_BTT2):
        sb = btt.probe(media, ns_size=ns.res_size, parent_uuid=parent, claim_class=ns.claim_class)
        if sb is not None:
            dev = Btt(region, region.nvdimm_bus.nd.ida_get(region.btt_ids), ns)
            dev.uuid = sb.uuid
            dev.lbasize = sb.external_lbasize
            return dev
    for cls, wanted in ((Pfn, CCLASS_PFN), (Dax, CCLASS_DAX)):
        if ns.claim_class not in (CCLASS_NONE, wanted):
            continue
        try:
            sb = pfn.probe(media, dax=cls.dax, parent_uuid=parent, ns_start=ns.res_start,
                           ns_size=ns.res_size)
        except OSError as e:
            raise _oserror(e) from None
        if sb is not None:
            dev = cls(region, region.nvdimm_bus.nd.ida_get(getattr(region, cls.ids_attr)), ns)
            dev.uuid = sb.uuid
            dev.mode = pfn.PfnMode(sb.mode)
            dev.align = sb.effective_align()
            return dev
    return None


@module_driver
class NdPmemDriver(Driver):
    name = "nd_pmem"
    bus_name = "nd"
    type_mask = (1 << ND_DEVICE_NAMESPACE_IO) | (1 << ND_DEVICE_NAMESPACE_PMEM)

    def probe(self, dev: Device) -> None:
        ns = common_probe(dev)
        try:
            self._probe(dev, ns)
        except Errno:
            self._release_range(dev)
            raise

    def _probe(self, dev: Device, ns: Namespace) -> None:
        if isinstance(dev, Btt):
            self._attach_btt(dev, ns)
        elif isinstance(dev, Pfn):
            sb = setup_pfn(dev, ns)
            self._attach_disk(dev, ns, sb)
        else:
            found = _detect(ns)
            if found is not None:
                # registered (and probed) once this probe has failed, as the
                # kernel's asynchronous nd_device_register() would
                defer(self.kernel, lambda: device_add(found))
                raise Errno(errno.ENXIO, f"{ns.name} holds a {found.kind} info block")
            self._attach_disk(ns, ns, None)

    def _request_range(self, dev: Device, ns: Namespace) -> None:
        """devm_request_mem_region() of the whole namespace, named after it
        (/proc/iomem shows ``namespaceX.Y`` below ``Persistent Memory``)."""
        if iomem_wrapped(ns.region):
            return
        res = self.kernel.iomem.request_region(ns.res_start, ns.res_size, ns.name)
        if res is None:
            raise Errno(errno.EBUSY, f"{ns.name}: could not reserve region")
        dev.iomem_res = res

    def _release_range(self, dev: Device) -> None:
        res = dev.iomem_res
        if res is not None:
            self.kernel.iomem.release(res)
            dev.iomem_res = None

    def remove(self, dev: Device) -> None:
        self._release_range(dev)
        disk = dev.disk
        if disk is not None:
            del_gendisk(disk)
            self.kernel.dax.free_minor(disk.dax_minor) if disk.dax_minor is not None else None
            dev.disk = None
        if isinstance(dev, Pfn):
            dev.sb = None
        if isinstance(dev, Btt):
            dev.geometry = None

    # -- disks --------------------------------------------------------------

    def _attach_disk(self, dev: Device, ns: Namespace, sb: pfn.PfnSuperblock | None) -> None:
        """pmem_attach_disk(): raw (whole namespace) or fsdax (data area)."""
        self._request_range(dev, ns)
        region = ns.region
        if sb is not None:
            offset, size = sb.data_resource(ns.res_start) - ns.res_start, sb.data_size(ns.res_size)
        else:
            offset, size = 0, ns.res_size
        dax = sb is not None or (region.desc.pagemap and not ns.force_raw)
        state = {"write_cache": True}
        params = DiskParams(
            capacity=lambda: size // SECTOR_SIZE, dax=dax,
            badblocks=lambda: badrange.badblocks_show(region.nvdimm_bus, ns.res_start + offset, size),
            read_only=lambda: region.ro)
        group = write_cache_group(lambda: state["write_cache"],
                                  lambda v: state.__setitem__("write_cache", v))
        disk = Gendisk(self.kernel, ns.block_name(), dev, params, [group],
                       media=DiskMedia(NamespaceMedia(ns), offset, size,
                                       poison=(region.nvdimm_bus, ns.res_start + offset)))
        disk.dax_minor = self.kernel.dax.alloc_minor()  # alloc_dax() for every pmem disk
        dev.disk = add_disk(disk)

    def _attach_btt(self, dev: Btt, ns: Namespace) -> None:
        """nvdimm_namespace_attach_btt(): a disk of BTT sectors."""
        self._request_range(dev, ns)
        try:
            geometry = btt.attach(NamespaceMedia(ns), ns_size=ns.res_size, lbasize=dev.lbasize,
                                  uuid=dev.uuid, parent_uuid=dev.parent_uuid(),
                                  claim_class=ns.claim_class, read_only=dev.region.ro)
        except OSError as e:
            raise _oserror(e) from None
        dev.geometry = geometry
        lbs = geometry.sector_size
        per_block = lbs // SECTOR_SIZE
        params = DiskParams(capacity=lambda: geometry.size // SECTOR_SIZE, logical_block_size=lbs,
                            physical_block_size=4096, write_cache=False,
                            max_hw_sectors_kb=(0xFFFFFFFF // per_block * per_block) // 2,
                            read_only=lambda: dev.region.ro)
        disk = Gendisk(self.kernel, ns.block_name() + "s", dev, params, media=None)
        disk.dax_minor = None
        dev.disk = add_disk(disk)


class DiskMedia:
    """The bytes a pmem disk exposes: a window of its namespace.

    ``poison`` is (bus, SPA of the disk's first byte): a read touching a
    known bad sector fails with EIO, a write over one first clears the
    poison through the bus provider, as pmem_do_read/pmem_do_write do.
    """

    def __init__(self, media: NamespaceMedia, offset: int, size: int, poison=None) -> None:
        self.media = media
        self.offset = offset
        self.size = size
        self.poison = poison

    def _bad(self, offset: int, length: int) -> bool:
        if self.poison is None or length <= 0:
            return False
        bus, base = self.poison
        first = offset // SECTOR_SIZE * SECTOR_SIZE
        end = -(-(offset + length) // SECTOR_SIZE) * SECTOR_SIZE
        return bool(badrange.sectors(badrange.bus_badrange(bus), base + first, end - first))

    def read(self, offset: int, length: int) -> bytes:
        length = max(0, min(length, self.size - offset))
        if self._bad(offset, length):
            raise Errno(errno.EIO, "read of a bad sector")
        return self.media.read(self.offset + offset, length) if length else b""

    def write(self, offset: int, data: bytes) -> int:
        if offset + len(data) > self.size:
            raise Errno(errno.ENOSPC, "write past the end of the disk")
        if self._bad(offset, len(data)):
            bus, base = self.poison
            clear_poison(bus, base + offset, len(data))
        self.media.write(self.offset + offset, data)
        return len(data)
