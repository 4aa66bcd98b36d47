"""ACPI NFIT (drivers/acpi/nfit/core.c): turns an NFIT description into an
nd bus with its DIMMs and regions, plus the provider attributes (``nfit/``
groups on the bus, DIMMs and regions) and the ACPI device it hangs off.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

from fakesys.errors import Errno
from fakesys.kernel.acpi.intel import INTEL_BUS_FW_OPS, INTEL_FW_OPS, NfitMemFwa
from fakesys.kernel.acpi.nfit_ctl import ACPI_NFIT_CTL
from fakesys.kernel.acpi.nfit_fw import Firmware, IntelSmart, Scrubber
from fakesys.kernel.acpi.nfit_table import Nfit, NfitDimm
from fakesys.kernel.base.bus import Bus
from fakesys.kernel.base.core import RO, RW, AttributeGroup, Device, device_add
from fakesys.kernel.base.dd import device_attach
from fakesys.kernel.base.driver import Driver, driver_register
from fakesys.kernel.nvdimm.bus import (
    BUS_CMD_NAMES, DIMM_CMD_NAMES, NVDIMM_FWA_CAP_INVALID, NVDIMM_FWA_INVALID, NvdimmBus, libnvdimm,
)
from fakesys.kernel.nvdimm.dimm import Nvdimm
from fakesys.kernel.nvdimm.label import fletcher64
from fakesys.kernel.nvdimm.region import InterleaveSet, Mapping, RegionDesc, region_create
from fakesys.kernel.parse import kstrtobool, kstrtoint
from fakesys.kernel.sort import kernel_sort
from fakesys.sysfs.tree import File, Link

if TYPE_CHECKING:
    from fakesys.kernel.kernel import Kernel

NFIT_MEM_FLAGS = ["save_fail", "restore_fail", "flush_fail", "not_armed", "smart_event",
                  "map_fail", "smart_notify"]


def _be16(v: int) -> int:
    return struct.unpack(">H", struct.pack("<H", v & 0xFFFF))[0]


def _be32(v: int) -> int:
    return struct.unpack(">I", struct.pack("<I", v & 0xFFFFFFFF))[0]


def _cmd_mask(names: list[str], table: dict[int, str]) -> int:
    lookup = {v: k for k, v in table.items()}
    mask = 0
    for name in names:
        if name not in lookup:
            raise ValueError(f"unknown command {name!r}")
        mask |= 1 << lookup[name]
    return mask


class AcpiBus(Bus):
    def __init__(self, kernel: "Kernel") -> None:
        super().__init__(kernel, "acpi")

    def match(self, dev: Device, drv: Driver) -> bool:
        return isinstance(dev, AcpiDevice) and dev.hid in getattr(drv, "ids", ())

    def uevent_env(self, dev: Device) -> list[str]:
        hid = getattr(dev, "hid", "")
        return [f"MODALIAS=acpi:{hid}:"] if hid else []


class AcpiDevice(Device):
    """An ACPI namespace device (drivers/acpi/scan.c); ``hid`` may be empty."""

    pm = True

    def __init__(self, kernel: "Kernel", name: str, parent, hid: str = "") -> None:
        super().__init__(kernel, name, parent, bus=_acpi(kernel))
        self.hid = hid


class NfitDriver(Driver):
    """The ACPI driver ``nfit``; the NFIT itself is parsed by nfit_register()."""

    name = "nfit"
    ids = ("ACPI0012",)
    module = None  # the 6.1 acpi_driver sets no owner: no module link


def _acpi(kernel: "Kernel") -> AcpiBus:
    bus = kernel.buses.get("acpi")
    if bus is None:
        bus = kernel.register_bus(AcpiBus(kernel))
    return bus  # type: ignore[return-value]


def _nfit_dimm_group(spec: NfitDimm, formats: int = 1) -> AttributeGroup:
    flags = "".join(f"{f} " for f in NFIT_MEM_FLAGS if f in spec.flags) + "\n"
    return AttributeGroup([
        RO("handle", lambda d: f"{spec.handle:#x}\n"),
        RO("phys_id", lambda d: f"{spec.phys_id:#x}\n"),
        RO("vendor", lambda d: f"0x{_be16(spec.vendor_id):04x}\n"),
        RO("device", lambda d: f"0x{_be16(spec.device_id):04x}\n"),
        RO("rev_id", lambda d: f"0x{_be16(spec.revision_id):04x}\n"),
        RO("subsystem_vendor", lambda d: f"0x{_be16(spec.subsystem_vendor_id):04x}\n"),
        RO("subsystem_device", lambda d: f"0x{_be16(spec.subsystem_device_id):04x}\n"),
        RO("subsystem_rev_id", lambda d: f"0x{_be16(spec.subsystem_revision_id):04x}\n"),
        RO("format", lambda d: f"0x{spec.format:04x}\n"),
        RO("formats", lambda d: f"{formats}\n"),
        RO("serial", lambda d: f"0x{_be32(spec.serial):08x}\n"),
        RO("flags", lambda d: flags),
        RO("id", lambda d: f"{dimm_id(spec)}\n"),
        RO("family", lambda d: f"{spec.family}\n"),
        RO("dsm_mask", lambda d: f"{spec.dsm_mask:#x}\n"),
        RO("dirty_shutdown", lambda d: f"{d.dirty_shutdown}\n"),
    ], name="nfit", is_visible=lambda d, a: 0 if a.name == "dirty_shutdown"
                                      and getattr(d, "dirty_shutdown", None) is None else a.mode)


def dimm_id(spec: NfitDimm) -> str:
    """nfit/id: vendor-serial (with location and date when the DCR has them)."""
    if spec.manufacturing_date or spec.manufacturing_location:
        return (f"{_be16(spec.vendor_id):04x}-{spec.manufacturing_location:02x}-"
                f"{_be16(spec.manufacturing_date):04x}-{_be32(spec.serial):08x}")
    return f"{_be16(spec.vendor_id):04x}-{_be32(spec.serial):08x}"


class NfitBusState:
    """acpi_nfit_desc: the provider side of one bus (``bus.provider_data``).

    ``fw`` is the platform's ARS/poison engine and ``scrubber`` the
    kernel's scrub work, both present when the bus supports ARS or the
    NFIT lists media errors (kernel/acpi/nfit_fw.py).
    """

    def __init__(self, spec: Nfit) -> None:
        self.spec = spec
        self.hw_error_scrub = 0
        self.fw = None
        self.scrubber = None
        # firmware activation (kernel/acpi/intel.py): the cached bus state
        # and capability, the activation count DIMM caches compare with,
        # and whether activation may skip forcing devices idle
        self.fwa_state = NVDIMM_FWA_INVALID
        self.fwa_cap = NVDIMM_FWA_CAP_INVALID
        self.fwa_count = 0
        self.fwa_noidle = False

    def noidle_store(self, d, buf: str) -> None:
        """A change of policy may change what the platform can promise:
        ask for the capability again."""
        val = kstrtobool(buf)
        if val != self.fwa_noidle:
            self.fwa_cap = NVDIMM_FWA_CAP_INVALID
        self.fwa_noidle = val

    def scrub_store(self, d, buf: str) -> None:
        if kstrtoint(buf, 0) != 1:
            raise Errno(errno.EINVAL, "scrub takes 1")
        rc = self.scrubber.rescan() if self.scrubber is not None else -errno.ENOTTY
        if rc:
            raise Errno(-rc, "scrub not started")

    def group(self) -> AttributeGroup:
        def hw_store(d, buf: str) -> None:
            val = kstrtoint(buf, 0)
            if val not in (0, 1):
                raise Errno(errno.EINVAL, "hw_error_scrub takes 0 or 1")
            self.hw_error_scrub = val
        ars = (1 << 1) | (1 << 2) | (1 << 3)

        def visible(d, a) -> int:
            if a.name == "scrub":
                return a.mode if d.cmd_mask & ars == ars else 0
            if a.name == "firmware_activate_noidle":
                return a.mode if self.spec.fw_activate else 0
            return a.mode
        return AttributeGroup([
            RO("revision", lambda d: f"{self.spec.revision}\n"),
            RO("dsm_mask", lambda d: f"{self.spec.dsm_mask:#x}\n"),
            RW("hw_error_scrub", lambda d: f"{self.hw_error_scrub}\n", hw_store),
            RW("scrub", lambda d: self.scrubber.show() if self.scrubber is not None else "0\n",
               self.scrub_store),
            RW("firmware_activate_noidle", lambda d: "Y\n" if self.fwa_noidle else "N\n",
               self.noidle_store),
        ], name="nfit", is_visible=visible)


def _acpi_device_tree(kernel: "Kernel", spec: Nfit) -> Device:
    """The ACPI0012 device (and, on older kernels, its ACPI parents)."""
    _acpi(kernel)  # the acpi bus, registered by the first ACPI device
    platform_dir = kernel.sys_devices.mkdir("platform")
    if kernel.version.nfit_platform_driver:
        parent_dir = platform_dir
    else:
        parent_dir = kernel.sys_devices.mkdir("LNXSYSTM:00").mkdir("LNXSYBUS:00")
    dev = AcpiDevice(kernel, "ACPI0012:00", parent_dir, hid="ACPI0012")
    dev.groups = [AttributeGroup([
        RO("hid", lambda d: "ACPI0012\n"),
        RO("modalias", lambda d: "acpi:ACPI0012:\n"),
        RO("path", lambda d: "\\_SB_.NVDR\n"),
    ])]
    device_add(dev, probe=False)
    if not kernel.version.nfit_platform_driver:
        platform_node = platform_dir.mkdir("ACPI0012:00")
        dev.kobj.add(Link("physical_node", platform_node))
    for slot in range(spec.acpi_slots):
        child = AcpiDevice(kernel, f"device:{0x20 + slot:x}", dev)
        child.groups = [AttributeGroup([
            RO("adr", lambda d, s=slot: f"0x{s + 1:08x}\n"),
            RO("path", lambda d, s=slot: f"\\_SB_.NVDR.NV{s:02X}\n"),
        ])]
        device_add(child, probe=False)
    nfit_module_init(kernel)
    device_attach(dev)
    return dev


def nfit_module_init(kernel: "Kernel") -> None:
    """What loading the nfit module does: the ACPI driver and the parameters."""
    acpi = _acpi(kernel)
    if "nfit" not in acpi.drivers:
        driver_register(NfitDriver(kernel, acpi))
    params = kernel.module_dir("nfit").mkdir("parameters")
    for name, mode, value in (("default_dsm_family", 0o444, "-1"), ("disable_vendor_specific", 0o444, "N"),
                              ("force_enable_dimms", 0o644, "N"), ("force_labels", 0o444, "N"),
                              ("no_init_ars", 0o644, "N"), ("override_dsm_mask", 0o444, "0")):
        if params.get(name) is None:
            params.add(File(name, mode, lambda v=value: f"{v}\n", (lambda data: None) if mode & 0o200 else None))


def nfit_register(kernel: "Kernel", spec: Nfit, parent=None, ndctl=None) -> NvdimmBus:
    """acpi_nfit_init() for one NFIT: bus, DIMMs (by handle), regions (SPA order).

    ``parent``: the platform device of a test NFIT (nfit_test.N), whose
    name is then the provider name; otherwise the ACPI0012 device.
    ``ndctl``: the provider's command handler in place of ACPI _DSM
    (nd_desc->ndctl; nfit_test brings its own).
    """
    if parent is None:
        parent = _acpi_device_tree(kernel, spec)
        provider = "ACPI.NFIT"
    else:
        provider = parent.name
    state = NfitBusState(spec)
    nd = libnvdimm(kernel)
    bus = NvdimmBus(kernel, nd, nd.ida_get(nd.bus_ids), parent, provider,
                    _cmd_mask(spec.commands, BUS_CMD_NAMES), ndctl or ACPI_NFIT_CTL)
    bus.groups.append(state.group())
    bus.provider_data = state
    if spec.fw_activate:
        bus.fw_ops = INTEL_BUS_FW_OPS   # acpi_nfit_get_fw_ops(): the Intel bus family
    ars = (1 << 1) | (1 << 2) | (1 << 3)
    if bus.cmd_mask & ars == ars or spec.media_errors:
        state.fw = Firmware(kernel, spec.ars_seconds, spec.clear_err_unit, poison=spec.media_errors)
        if bus.cmd_mask & ars == ars:
            state.scrubber = Scrubber(kernel, bus, state.fw,
                                      [(r.spa, r.size) for r in spec.regions if r.dimms])
    device_add(bus)
    if state.scrubber is not None:
        nfit_dir = bus.kobj.get("nfit")
        state.scrubber.attr = nfit_dir.get("scrub") if nfit_dir is not None else None
    dimms: dict[str, Nvdimm] = {}
    for dspec in sorted(spec.dimms, key=lambda d: d.handle):
        lsa, media = dspec.lsa, dspec.media
        # formats: 1 if a SPA-PM range maps the DIMM (a map_fail DIMM has none)
        mapped = any(dspec.name in r.dimms for r in spec.regions) or not spec.regions
        groups = [_nfit_dimm_group(dspec, int(mapped))] + _dimm_extra_groups(dspec)
        dimm = Nvdimm(kernel, bus, nd.ida_get(nd.dimm_ids), cmd_mask=_cmd_mask(dspec.commands, DIMM_CMD_NAMES),
                      lsa=lsa, media=media, max_xfer=dspec.max_xfer,
                      unarmed="not_armed" in dspec.flags, provider_groups=groups)
        dimm.spec = dspec
        if dspec.fw_activate:           # the DIMM has the Intel activate functions
            dimm.fw_ops, dimm.fwa = INTEL_FW_OPS, NfitMemFwa()
        _dimm_smart(dimm, dspec)
        dimms[dspec.name] = dimm
        device_add(dimm)
    regions = []
    for rspec in spec.regions:
        members = [dimms[name] for name in rspec.dimms]
        offsets = rspec.region_offset or [0] * len(members)
        infos = [NfitSetInfo(region_offset=offsets[i], serial=d.spec.serial, vendor_id=d.spec.vendor_id,
                             mfg_date=d.spec.manufacturing_date, mfg_location=d.spec.manufacturing_location)
                 for i, d in enumerate(members)]
        if infos:
            nd_set = acpi_nfit_init_interleave_set(infos)
        else:
            nd_set = InterleaveSet(0, 0, 0, bytes(16))
        per_dimm = rspec.size // len(members) if members else 0
        mappings = [Mapping(d, rspec.dpa[i], per_dimm, i) for i, d in enumerate(members)]
        media = None if members else rspec.media
        desc = RegionDesc(start=rspec.spa, size=rspec.size, mappings=mappings, nd_set=nd_set,
                          numa_node=rspec.numa_node, target_node=rspec.target_node,
                          interleave_granularity=rspec.interleave_granularity,
                          persist_memctrl=spec.persistence_domain == "memory_controller",
                          persist_cache=spec.persistence_domain == "cpu_cache",
                          flush_hints=spec.flush_hints, volatile=rspec.volatile, media=media,
                          provider_groups=(AttributeGroup(
                              [RO("range_index", lambda r, i=rspec.range_index: f"{i}\n")], name="nfit"),))
        regions.append(region_create(bus, desc, probe=False))
    order = list(reversed(regions)) if spec.region_probe_order == "reverse" else regions
    if state.scrubber is not None:
        state.scrubber.register()       # the short ARS before the regions probe
    for region in order:
        device_attach(region)
    return bus


def _dimm_extra_groups(spec: NfitDimm) -> list[AttributeGroup]:
    """Security (Intel family) attributes a DIMM may have."""
    groups = []
    if spec.security:
        groups.append(AttributeGroup([
            RW("security", lambda d: f"{spec.security}\n", lambda d, b: None),
            RO("frozen", lambda d: "0\n"),
        ]))
    return groups


def _dimm_smart(dimm: Nvdimm, spec: NfitDimm) -> None:
    """The DIMM's Intel SMART state and what the kernel learns from it at
    probe (nfit_intel_shutdown_status: the dirty-shutdown count)."""
    has = spec.smart if spec.smart is not None else (spec.family == 0 and spec.dsm_mask >> 1 & 1)
    dimm.smart = None
    dimm.dirty_shutdown = None
    if not has:
        return

    def health_event() -> None:
        nfit_dir = dimm.kobj.get("nfit") if dimm.kobj is not None else None
        flags = nfit_dir.get("flags") if nfit_dir is not None else None
        if flags is not None:
            flags.notify()
    dimm.smart = IntelSmart(notify=health_event)
    dimm.dirty_shutdown = dimm.smart.shutdown_count


# NFIT_SPA_PM: 66f0d379-b4f3-4074-ac43-0d3318b78cdb, in GUID byte order
_SPA_PM_GUID = bytes.fromhex("79d3f066f3b47440ac430d3318b78cdb")


# -- interleave sets (acpi_nfit_init_interleave_set) --------------------------

_U32 = 0xFFFF_FFFF
_U64 = 0xFFFF_FFFF_FFFF_FFFF


@dataclass(frozen=True)
class NfitSetInfo:
    """What the NFIT contributes per DIMM of an interleave set.

    ``serial`` is the 32-bit word exactly as stored in the NFIT control
    region (a QEMU DIMM with table bytes ``56 34 12 00`` has 0x00123456);
    ``vendor_id`` and ``mfg_date`` are the raw 16-bit table words and
    ``mfg_location`` the raw byte.  ``region_offset`` comes from the memory
    device (memdev) entry of the SPA range.
    """

    region_offset: int
    serial: int
    vendor_id: int = 0
    mfg_date: int = 0
    mfg_location: int = 0

    def pack_v11(self) -> bytes:
        """16-byte nfit_set_info record (cookie1 / altcookie)."""
        return struct.pack("<QII", self.region_offset & _U64, self.serial & _U32, 0)

    def pack_v12(self) -> bytes:
        """48-byte nfit_set_info2 record (cookie2): 8+4+2+2+1+31 bytes."""
        return struct.pack("<QIHHB31x", self.region_offset & _U64, self.serial & _U32,
                           self.vendor_id & 0xFFFF, self.mfg_date & 0xFFFF,
                           self.mfg_location & 0xFF)


def _cmp_offset(x: NfitSetInfo, y: NfitSetInfo) -> int:
    return (x.region_offset > y.region_offset) - (x.region_offset < y.region_offset)


def _cmp_offset_memcmp(x: NfitSetInfo, y: NfitSetInfo) -> int:
    # memcmp() of the little-endian u64: least significant byte first
    bx = struct.pack("<Q", x.region_offset & _U64)
    by = struct.pack("<Q", y.region_offset & _U64)
    return (bx > by) - (bx < by)


def acpi_nfit_init_interleave_set(dimms: Iterable[NfitSetInfo],
                                  type_guid: bytes = _SPA_PM_GUID) -> InterleaveSet:
    """The nd_interleave_set of a SPA range: cookie1, cookie2 and altcookie.

    Computed here, once, because the NFIT is what knows the set's DIMMs;
    which cookie a label carries is the region's choice
    (:meth:`InterleaveSet.cookie`).  ``dimms`` are the set's mappings in
    NFIT memdev order.  cookie1 is Fletcher-64 over the 16-byte records
    sorted by region_offset, cookie2 over the 48-byte records sorted the
    same way, altcookie over the 16-byte records re-sorted by memcmp() of
    the offset (the order older kernels used, so their v1.1 labels still
    match).  ``type_guid`` is the range's type (persistent memory).
    """
    infos = list(dimms)
    by_offset = kernel_sort(infos, _cmp_offset)
    cookie1 = fletcher64(b"".join(d.pack_v11() for d in by_offset), le=False)
    cookie2 = fletcher64(b"".join(d.pack_v12() for d in kernel_sort(infos, _cmp_offset)),
                         le=False)
    compat = kernel_sort(by_offset, _cmp_offset_memcmp)
    altcookie = fletcher64(b"".join(d.pack_v11() for d in compat), le=False)
    return InterleaveSet(cookie1, cookie2, altcookie, type_guid)


def interleave_set_positions(dimms: Sequence[NfitSetInfo]) -> list[int]:
    """Mapping ``position`` of each DIMM (same order as ``dimms``).

    The position is the DIMM's index in the cookie2 sort order; a DIMM is
    recognised by serial, vendor, date and location, the first match wins.
    The kernel stores it in nd_mapping.position (shown by ``mappingN``).
    Not yet used by :func:`nfit_register`, whose mappings take memdev order;
    the two agree while region offsets ascend in memdev order.
    """
    positions = [0] * len(dimms)
    ordered = kernel_sort(list(dimms), _cmp_offset)
    for pos, info in enumerate(ordered):
        for j, dimm in enumerate(dimms):
            if (dimm.serial, dimm.vendor_id, dimm.mfg_date, dimm.mfg_location) == \
                    (info.serial, info.vendor_id, info.mfg_date, info.mfg_location):
                positions[j] = pos
                break
    return positions
