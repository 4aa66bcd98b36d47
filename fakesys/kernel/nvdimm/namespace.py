"""Namespaces: ``namespaceR.K`` devices (namespace_devs.c).

Two kinds, as in the kernel: the io namespace of a label-less region,
which simply is the region's whole range, and the pmem namespace of a
label-backed region, which userspace sizes through ``uuid``/``size`` and
whose DPA allocation is recorded in labels on every DIMM of the region.
"""

from __future__ import annotations

import errno
import uuid as uuidlib
from typing import TYPE_CHECKING

from fakesys.errors import Errno
from fakesys.kernel.base.core import (
    ADMIN_RO, RO, RW, Attribute, AttributeGroup, device_add, device_del, DeviceType,
)
from fakesys.kernel.nvdimm.bus import (
    ND_DEVICE_GROUP, ND_DEVICE_NAMESPACE_IO, ND_DEVICE_NAMESPACE_PMEM, ND_NUMA_GROUP, NdDevice,
)
from fakesys.kernel.nvdimm.dimm import DpaResource, label_id
from fakesys.kernel.nvdimm.label import (
    CLAIM_CLASS_GUIDS, NSLABEL_NAME_LEN, NULL_GUID, LabelArea, LabelError, PmemLabelSpec,
    pmem_namespace_label_update,
)
from fakesys.kernel.parse import kstrtobool, kstrtoull, strim, strip_newline

if TYPE_CHECKING:
    from fakesys.kernel.nvdimm.claim import Claim
    from fakesys.kernel.nvdimm.region import Region

PMEM_LBASIZES = (512, 4096)

# enum nvdimm_claim_class
CCLASS_NONE, CCLASS_BTT, CCLASS_BTT2, CCLASS_PFN, CCLASS_DAX, CCLASS_UNKNOWN = range(6)
_CCLASS_GUID_NAME = {CCLASS_BTT: "btt", CCLASS_BTT2: "btt2", CCLASS_PFN: "pfn", CCLASS_DAX: "dax"}


def parse_uuid(buf: str) -> uuidlib.UUID:
    """nd_uuid_parse(): 16 hex pairs, each optionally followed by - : \\n or NUL."""
    out = bytearray()
    i = 0
    hexdigits = "0123456789abcdefABCDEF"
    for _ in range(16):
        pair = buf[i:i + 2]
        if len(pair) < 2 or pair[0] not in hexdigits or pair[1] not in hexdigits:
            raise Errno(errno.EINVAL, f"bad uuid {buf!r}")
        out.append(int(pair, 16))
        i += 2
        if buf[i:i + 1] in ("\n", "-", ":", "\0"):
            i += 1
    return uuidlib.UUID(bytes=bytes(out))


class Namespace(NdDevice):
    """nd_namespace_common: what io and pmem namespaces share."""

    def __init__(self, region: Region, name: str) -> None:
        super().__init__(region.kernel, name, region, bus=region.nvdimm_bus.nd.bus)
        self.region = region
        self.nd_type = region.nstype()
        self.claim: "Claim | None" = None
        self.claim_class = CCLASS_NONE
        self.force_raw = False
        self.res_start = region.start
        self.res_size = 0

    @property
    def capacity(self) -> int:
        return self.res_size

    def numa_node(self) -> int:
        return self.region.numa_node()

    def target_node(self) -> int:
        return self.region.target_node()

    def block_name(self) -> str:
        """nvdimm_namespace_disk_name(): pmem<region>[.<nsid>]."""
        nsid = getattr(self, "id", 0)
        return f"pmem{self.region.id}" + (f".{nsid}" if nsid else "")

    def check_idle(self) -> None:
        if self.driver is not None or self.claim is not None:
            raise Errno(errno.EBUSY, f"{self.name} is active or claimed")

    # -- attributes shared by both kinds ---------------------------------

    def mode_show(self) -> str:
        claim = self.claim
        if claim is not None:
            return {"btt": "safe\n", "pfn": "memory\n", "dax": "dax\n"}[claim.kind]
        if self.region.desc.pagemap and not self.force_raw:
            return "memory\n"
        return "raw\n"

    def holder_class_show(self) -> str:
        return {CCLASS_NONE: "\n", CCLASS_BTT: "btt\n", CCLASS_BTT2: "btt\n",
                CCLASS_PFN: "pfn\n", CCLASS_DAX: "dax\n"}.get(self.claim_class, "<unknown>\n")

    def holder_class_store(self, buf: str) -> None:
        self.check_idle()
        value = strip_newline(buf)
        if value == "btt":
            cclass = btt_claim_class(self.region)
        elif value == "pfn":
            cclass = CCLASS_PFN
        elif value == "dax":
            cclass = CCLASS_DAX
        elif value == "":
            cclass = CCLASS_NONE
        else:
            raise Errno(errno.EINVAL, f"unknown holder class {value!r}")
        labels_reachable(self)
        self.claim_class = cclass
        label_update(self)

    def resource_show(self) -> str:
        if self.res_size == 0:
            raise Errno(errno.ENXIO, "no allocation")
        return f"{self.res_start:#x}\n"

    def force_raw_store(self, buf: str) -> None:
        self.force_raw = kstrtobool(buf)


class NamespaceIo(Namespace):
    """nd_namespace_io: the single namespace of a label-less region."""

    type = None

    def __init__(self, region: Region) -> None:
        super().__init__(region, f"namespace{region.id}.0")
        self.type = IO_TYPE
        self.nd_type = ND_DEVICE_NAMESPACE_IO
        self.res_start = region.start
        self.res_size = region.size


class NamespacePmem(Namespace):
    """nd_namespace_pmem: a label-backed namespace with uuid, name and size."""

    type = None

    def __init__(self, region: Region, id: int) -> None:
        super().__init__(region, f"namespace{region.id}.{id}")
        self.type = PMEM_TYPE
        self.nd_type = ND_DEVICE_NAMESPACE_PMEM
        self.id = id
        self.uuid: uuidlib.UUID | None = None
        self.alt_name = ""
        self.lbasize = 0
        self.reap: set[uuidlib.UUID] = set()
        self.pending_size = 0  # what the labels found at boot add up to, until registered

    # -- attributes -------------------------------------------------------


    def holds_uuid(self, uuid: uuidlib.UUID) -> bool:
        return self.uuid == uuid
    def uuid_store(self, buf: str) -> None:
        if self.claim is not None or self.driver is not None:
            raise Errno(errno.EBUSY, f"{self.name} is active or claimed")
        new = parse_uuid(buf)
        bus = self.region.nvdimm_bus
        if uuid_busy(bus, new):
            raise Errno(errno.EINVAL, f"uuid {new} is in use")
        labels_reachable(self, new)
        if self.uuid is not None:
            if any(not m.nvdimm.ndd or not m.nvdimm.ndd.labels or not m.nvdimm.ndd.labels.valid
                   or not m.nvdimm.ndd.labels.labels() for m in self.region.mappings):
                raise Errno(errno.EBUSY, "cannot rename a namespace without labels")
            old_id, new_id = label_id(self.uuid), label_id(new)
            for m in self.region.mappings:
                for r in m.nvdimm.ndd.dpa:
                    if r.name == old_id:
                        r.name = new_id
            self.reap.add(self.uuid)
        self.uuid = new
        label_update(self)

    def alt_name_store(self, buf: str) -> None:
        self.check_idle()
        name = strim(buf)  # bytes as written (surrogateescape), like the kernel's char[]
        if len(name.encode("utf-8", "surrogateescape")) + 1 > NSLABEL_NAME_LEN:
            raise Errno(errno.EINVAL, "alt_name too long")
        labels_reachable(self)
        self.alt_name = name
        label_update(self)

    def sector_size_show(self) -> str:
        return "".join(f"[{s}] " if s == self.lbasize else f"{s} " for s in PMEM_LBASIZES) + "\n"

    def sector_size_store(self, buf: str) -> None:
        if self.claim is not None or self.driver is not None:
            raise Errno(errno.EBUSY, f"{self.name} is active or claimed")
        size = kstrtoull(buf, 0)
        if size not in PMEM_LBASIZES:
            raise Errno(errno.EINVAL, f"unsupported sector size {size}")
        labels_reachable(self)
        self.lbasize = size
        label_update(self)

    def size_store(self, buf: str) -> None:
        val = kstrtoull(buf, 0)
        resize(self, val)
        label_update(self)
        if val == 0:
            self.uuid = None

    def dpa_extents_show(self) -> str:
        if self.uuid is None:
            return "0\n"
        lid = label_id(self.uuid)
        count = sum(1 for m in self.region.mappings if m.nvdimm.ndd
                    for r in m.nvdimm.ndd.dpa if r.name == lid)
        return f"{count}\n"


def namespace_visible(ns: Namespace, a: Attribute) -> int:
    """namespace_visible(): pmem namespaces show all (size writable), io a few."""
    if isinstance(ns, NamespacePmem):
        return 0o644 if a.name == "size" else a.mode
    if a.name in ("nstype", "size", "holder", "holder_class", "force_raw", "mode", "resource"):
        return a.mode
    return 0


def _pmem_only(fn):
    def wrapper(ns, *args):
        if not isinstance(ns, NamespacePmem):
            raise Errno(errno.ENXIO, "not a pmem namespace")
        return fn(ns, *args)
    return wrapper


NAMESPACE_GROUP = AttributeGroup([
    RO("nstype", lambda ns: f"{ns.region.nstype()}\n"),
    RW("size", lambda ns: f"{ns.capacity}\n", _pmem_only(NamespacePmem.size_store)),
    RW("uuid", _pmem_only(lambda ns: f"{ns.uuid}\n" if ns.uuid else "\n"), _pmem_only(NamespacePmem.uuid_store)),
    ADMIN_RO("resource", Namespace.resource_show),
    RW("alt_name", _pmem_only(lambda ns: (ns.alt_name + "\n").encode("utf-8", "surrogateescape")),
       _pmem_only(NamespacePmem.alt_name_store)),
    RW("sector_size", _pmem_only(NamespacePmem.sector_size_show), _pmem_only(NamespacePmem.sector_size_store)),
    RO("dpa_extents", _pmem_only(NamespacePmem.dpa_extents_show)),
    RO("holder", lambda ns: f"{ns.claim.name}\n" if ns.claim is not None else "\n"),
    RW("holder_class", Namespace.holder_class_show, Namespace.holder_class_store),
    RO("mode", Namespace.mode_show),
    RW("force_raw", lambda ns: f"{int(ns.force_raw)}\n", Namespace.force_raw_store),
], is_visible=namespace_visible)
# "size" is declared 0444 and promoted to 0644 for pmem namespaces.
NAMESPACE_GROUP.attrs[1] = Attribute("size", 0o444, NAMESPACE_GROUP.attrs[1].show, NAMESPACE_GROUP.attrs[1].store)

IO_TYPE = DeviceType("nd_namespace_io", [ND_DEVICE_GROUP, NAMESPACE_GROUP, ND_NUMA_GROUP])
PMEM_TYPE = DeviceType("nd_namespace_pmem", [ND_DEVICE_GROUP, NAMESPACE_GROUP, ND_NUMA_GROUP])


# -- uuid uniqueness ---------------------------------------------------------

def uuid_busy(bus, uuid: uuidlib.UUID) -> bool:
    """is_namespace_uuid_busy(): namespaces, btt and pfn/dax devices on the bus."""
    return any(isinstance(dev, NdDevice) and dev.holds_uuid(uuid)
               for region in bus.regions() for dev in region.children)


def btt_claim_class(region: Region) -> int:
    """btt_claim_class(): BTT for v1.1 labels (or none), BTT2 for v1.2 or blank."""
    mask = 0
    for m in region.mappings:
        ndd = m.nvdimm.ndd
        if ndd is None or ndd.labels is None or not ndd.labels.valid:
            mask |= 1
        elif ndd.labels.version == (1, 1):
            mask |= 2
        else:
            mask |= 4
    if mask in (0, 2):
        return CCLASS_BTT
    if mask in (1, 4):
        return CCLASS_BTT2
    raise Errno(errno.ENXIO, "DIMMs disagree on label version")


# -- DPA allocation (__size_store) ------------------------------------------

def resize(ns: NamespacePmem, val: int) -> None:
    region = ns.region
    if ns.driver is not None or ns.claim is not None:
        raise Errno(errno.EBUSY, f"{ns.name} is active or claimed")
    if ns.uuid is None:
        raise Errno(errno.ENXIO, "uuid not set")
    if not region.mappings:
        raise Errno(errno.ENXIO, "not associated with DIMMs")
    if val % region.align:
        raise Errno(errno.EINVAL, f"{val} is not {region.align // 1024}K aligned")
    lid = label_id(ns.uuid)
    allocated = 0
    for m in region.mappings:
        if m.nvdimm.ndd is None:
            raise Errno(errno.ENXIO, f"{m.nvdimm.name} is disabled")
        allocated += m.nvdimm.ndd.allocated(lid)
    available = region.allocatable_dpa()
    if val > available + allocated:
        raise Errno(errno.ENOSPC, f"{val} exceeds available {available + allocated}")
    if val == allocated:
        return
    n = len(region.mappings)
    per_dimm, cur = val // n, allocated // n
    if per_dimm < cur:
        for m in region.mappings:
            _shrink(m.nvdimm.ndd, lid, cur - per_dimm)
    else:
        for m in region.mappings:
            _grow(region, m, lid, per_dimm - cur)
    set_resource(ns, val)
    if val == 0 and ns.id != 0 and region.ns_seed is not ns and ns.claim is None:
        device_del(ns)  # nd_device_unregister(ND_ASYNC)
        region.ns_ids.discard(ns.id)


def _grow(region: Region, m, lid: str, n: int) -> None:
    """scan_allocate(): extend this label's extent in place, else first fit."""
    ndd = m.nvdimm.ndd
    mine = ndd.resources(lid)
    free = region.free_extents(m)
    if mine:
        last = mine[-1]
        for s, e in free:
            if s == last.end and e - s >= n:
                last.size += n
                return
        raise Errno(errno.ENOSPC, "no contiguous space after the allocation")
    for s, e in free:
        if e - s >= n:
            ndd.dpa.append(DpaResource(lid, s, n))
            return
    raise Errno(errno.ENOSPC, "no free extent large enough")


def _shrink(ndd, lid: str, n: int) -> None:
    """shrink_dpa_allocation(): give space back from the highest extent down."""
    for r in reversed(ndd.resources(lid)):
        take = min(n, r.size)
        r.size -= take
        n -= take
        if r.size == 0:
            ndd.dpa.remove(r)
        if n == 0:
            return


def set_resource(ns: NamespacePmem, size: int) -> None:
    """nd_namespace_pmem_set_resource(): SPA = region start + DPA offset x N."""
    region = ns.region
    offset = 0
    if size and region.mappings and ns.uuid is not None:
        m = region.mappings[0]
        mine = m.nvdimm.ndd.resources(label_id(ns.uuid))
        if mine:
            offset = (mine[0].start - m.start) * len(region.mappings)
        else:
            size = 0
    ns.res_start = region.start + offset
    ns.res_size = size


# -- labels (nd_namespace_label_update) ----------------------------------------

def labels_reachable(ns: Namespace, uuid: uuidlib.UUID | None = None) -> None:
    """Refuse (ENXIO) a store whose label update could not reach every DIMM.

    The kernel's stores change the namespace first and then update the
    labels through each mapping's driver data; with a DIMM's driver unbound
    under an enabled region that data is gone (to_ndd() is NULL) and the
    kernel would oops.  The model refuses such a store before it changes
    anything.  Only stores that will write labels are refused: those of a
    pmem namespace that has (or is getting) a uuid.
    """
    if not isinstance(ns, NamespacePmem) or (ns.uuid is None and uuid is None):
        return
    for m in ns.region.mappings:
        ndd = m.nvdimm.ndd
        if ndd is None or ndd.labels is None:
            raise Errno(errno.ENXIO, f"{m.nvdimm.name} is disabled or has no label area")


def label_update(ns: Namespace) -> None:
    """nd_namespace_label_update(): after a store, write the labels of an
    idle pmem namespace that has a uuid (a size of 0 deletes them).

    Builds each DIMM's label from the namespace, the region's interleave
    set and the DIMM's DPA allocation, checking every DIMM before writing
    any, then runs the one label update, :func:`pmem_namespace_label_update`.
    """
    if not isinstance(ns, NamespacePmem) or ns.driver is not None or ns.claim is not None:
        return
    if ns.uuid is None:
        return
    try:
        pmem_namespace_label_update(_label_mappings(ns), ns.res_size, reap=ns.reap)
    except LabelError as e:
        raise Errno(e.errno or errno.ENXIO, str(e)) from None
    if ns.res_size:
        ns.reap.clear()


def _label_mappings(ns: NamespacePmem) -> list[tuple[LabelArea, PmemLabelSpec]]:
    """(label area, label) per mapping, in mapping order, or ENXIO when a
    DIMM has no label area, the region no interleave set, or a DIMM no
    allocation for a sized namespace (refused before any label is written)."""
    region = ns.region
    assert ns.uuid is not None
    for m in region.mappings:
        ndd = m.nvdimm.ndd
        if ndd is None or ndd.labels is None:
            raise Errno(errno.ENXIO, f"{m.nvdimm.name} has no label area")
    if ns.res_size == 0:
        return [(m.nvdimm.ndd.labels, PmemLabelSpec(uuid=ns.uuid, dpa=0, rawsize=0))
                for m in region.mappings]
    nd_set = region.nd_set
    if nd_set is None:
        raise Errno(errno.ENXIO, "region has no interleave set")
    out = []
    for pos, m in enumerate(region.mappings):
        ndd = m.nvdimm.ndd
        res = ndd.resources(label_id(ns.uuid))
        if not res:
            raise Errno(errno.ENXIO, "no DPA allocation")
        out.append((ndd.labels, PmemLabelSpec(
            uuid=ns.uuid, dpa=res[0].start, rawsize=sum(r.size for r in res), nd_set=nd_set,
            name=ns.alt_name, nlabel=len(region.mappings), position=pos, lbasize=ns.lbasize,
            type_guid=uuidlib.UUID(bytes_le=nd_set.type_guid),
            abstraction_guid=_abstraction_guid(ns.claim_class))))
    return out


def _abstraction_guid(cclass: int) -> uuidlib.UUID:
    name = _CCLASS_GUID_NAME.get(cclass)
    return CLAIM_CLASS_GUIDS[name] if name else NULL_GUID


def _claim_class_of(label) -> int:
    name = label.claim_class
    return {"btt": CCLASS_BTT, "btt2": CCLASS_BTT2, "pfn": CCLASS_PFN,
            "dax": CCLASS_DAX}.get(name or "", CCLASS_NONE)


# -- publishing (nd_region_register_namespaces) ----------------------------------

def scan_labels(region: Region) -> list[NamespacePmem]:
    """create_namespace_pmem() for every uuid complete on all mappings."""
    first = region.mappings[0].nvdimm.ndd
    if first is None or first.labels is None or not first.labels.valid or region.nd_set is None:
        return []
    n = len(region.mappings)
    found = []
    for lab in first.labels.labels():
        if lab.nlabel != n:
            continue
        cookie = region.nd_set.cookie(first.labels.version)
        if lab.isetcookie not in (cookie, region.nd_set.altcookie):
            continue
        per_dimm = []
        for pos, m in enumerate(region.mappings):
            ndd = m.nvdimm.ndd
            match = [l for l in (ndd.labels.labels() if ndd and ndd.labels and ndd.labels.valid else [])
                     if l.uuid == lab.uuid and l.position == pos]
            if not match or not (m.start <= match[0].dpa and match[0].dpa + match[0].rawsize <= m.start + m.size):
                break
            per_dimm.append(match[0])
        else:
            found.append((lab, per_dimm))
    found.sort(key=lambda item: item[0].dpa)  # cmp_dpa
    out = []
    for lab, per_dimm in found:
        ns = NamespacePmem(region, -1)
        ns.uuid = lab.uuid
        ns.alt_name = lab.raw_name.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        ns.lbasize = lab.lbasize
        ns.claim_class = _claim_class_of(lab)
        ns.pending_size = sum(l.rawsize for l in per_dimm)
        out.append(ns)
    return out


def _name(ns: NamespacePmem, id: int) -> None:
    ns.id = id
    ns.name = f"namespace{ns.region.id}.{id}"


def register_namespaces(region: Region) -> list[Namespace]:
    """Publish the region's namespaces; the first one becomes the ns seed."""
    if region.nstype() == ND_DEVICE_NAMESPACE_IO:
        devs: list[Namespace] = [NamespaceIo(region)]
    else:
        devs = list(scan_labels(region)) or [NamespacePmem(region, -1)]
        for ns in devs:
            _name(ns, region.nvdimm_bus.nd.ida_get(region.ns_ids))
            set_resource(ns, ns.pending_size)
    for ns in devs:
        device_add(ns, probe=False)
    region.ns_seed = devs[0]
    return devs


def create_ns_seed(region: Region) -> None:
    """nd_region_create_ns_seed(): label-backed regions get a fresh idle namespace."""
    if region.nstype() == ND_DEVICE_NAMESPACE_IO:
        return
    ns = NamespacePmem(region, region.nvdimm_bus.nd.ida_get(region.ns_ids))
    region.ns_seed = ns
    device_add(ns)
