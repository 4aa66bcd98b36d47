"""Topology files (TOML) -> the machine description the kernel boots from.

A topology names the emulated kernel version and lists nd buses with
their DIMMs and regions.  Sizes may be integers or strings with a binary
suffix ("128K", "1G"); numbers may be written in hex.  See
devices/default.toml for a commented example.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field

from fakesys.kernel.version import NEWEST

_SUFFIX = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

DEFAULT_DIMM_COMMANDS = ["get_size", "get_data", "set_data", "cmd_call"]


def parse_size(value: int | str) -> int:
    if isinstance(value, int):
        return value
    text = value.strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in _SUFFIX:
        return int(float(text[:-1]) * _SUFFIX[text[-1]])
    return int(text, 0)


@dataclass
class DimmSpec:
    name: str
    handle: int
    size: int                      # DPA space exposed to the region(s)
    label_size: int = 128 << 10    # 0: no label area
    labels: str = "blank"          # blank | v1.1 | v1.2 (initialized as ndctl init-labels does)
    phys_id: int = 0
    vendor_id: int = 0x8086        # as stored in the NFIT control region (little-endian)
    device_id: int = 0x0001
    revision_id: int = 0x0001
    subsystem_vendor_id: int = 0
    subsystem_device_id: int = 0
    subsystem_revision_id: int = 0
    serial: int = 0                # as stored in the NFIT control region
    format: int = 0x0301           # interface code
    manufacturing_location: int = 0
    manufacturing_date: int = 0
    family: int = 0                # NVDIMM_FAMILY_INTEL
    dsm_mask: int = 0x70
    commands: list[str] = field(default_factory=lambda: list(DEFAULT_DIMM_COMMANDS))
    max_xfer: int = 4076
    flags: list[str] = field(default_factory=list)  # nfit memdev flags: not_armed, ...
    smart: bool | None = None      # Intel SMART state (default: dsm_mask has function 1)
    security: str = ""             # "disabled": the DIMM shows security/frozen attributes
    fw_activate: bool = False      # firmware/activate and firmware/result attributes


@dataclass
class RegionSpec:
    spa: int
    size: int
    dimms: list[str]
    dpa: list[int] = field(default_factory=list)  # start DPA per mapping (default 0)
    range_index: int = 0
    numa_node: int = 0
    target_node: int = 0
    interleave_granularity: int = 4096
    volatile: bool = False         # an nd_volatile region (no DIMMs needed)
    region_offset: list[int] = field(default_factory=list)  # memdev region_offset per mapping


@dataclass
class BusSpec:
    type: str = "nfit"
    dimms: list[DimmSpec] = field(default_factory=list)
    regions: list[RegionSpec] = field(default_factory=list)
    commands: list[str] = field(default_factory=lambda: ["cmd_call"])
    dsm_mask: int = 0
    acpi_slots: int = 0            # ACPI NVDIMM slot devices (QEMU: -m slots=)
    region_probe_order: str = "reverse"  # order the async region probes finished in
    provider: str = ""             # a platform device to hang off instead of ACPI0012 (nfit_test.N)
    module: str = ""               # loaded by "modprobe MODULE" in the fake, not at boot
    revision: int = 1              # NFIT table revision (nfit/revision)
    persistence_domain: str = ""   # memory_controller | cpu_cache (platform capabilities)
    flush_hints: bool = False      # DIMMs have flush hint addresses (deep_flush writable)
    fw_activate: bool = False      # bus firmware/activate, firmware/capability
    ars_seconds: float = 1.0       # how long one ARS of the firmware takes
    clear_err_unit: int = 256
    media_errors: list = field(default_factory=list)  # [(spa, length)] poisoned at boot


@dataclass
class Topology:
    kernel: str = NEWEST
    buses: list = field(default_factory=list)  # BusSpec for nfit; other types bring their own spec
    sections: dict = field(default_factory=dict)  # other top-level tables, for their providers
    source: str = ""

    def bus_of(self, name: str) -> BusSpec | None:
        for bus in self.buses:
            if any(d.name == name for d in bus.dimms):
                return bus
        return None


def _dimm(d: dict, index: int) -> DimmSpec:
    spec = DimmSpec(name=str(d.get("name", f"dimm{index}")), handle=int(d["handle"]),
                    size=parse_size(d["size"]))
    for key in ("label_size",):
        if key in d:
            setattr(spec, key, parse_size(d[key]))
    for key, value in d.items():
        if key in ("name", "handle", "size", "label_size"):
            continue
        if not hasattr(spec, key):
            raise ValueError(f"unknown DIMM key {key!r}")
        setattr(spec, key, value)
    if spec.labels not in ("blank", "v1.1", "v1.2"):
        raise ValueError(f"labels must be blank, v1.1 or v1.2, not {spec.labels!r}")
    return spec


def _region(r: dict) -> RegionSpec:
    spec = RegionSpec(spa=parse_size(r["spa"]), size=parse_size(r["size"]), dimms=list(r["dimms"]))
    for key, value in r.items():
        if key in ("spa", "size", "dimms"):
            continue
        if not hasattr(spec, key):
            raise ValueError(f"unknown region key {key!r}")
        setattr(spec, key, [parse_size(v) for v in value] if key in ("dpa", "region_offset") else value)
    if not spec.dpa:
        spec.dpa = [0] * len(spec.dimms)
    return spec


def _media_error(e) -> tuple[int, int]:
    """A poisoned range: {start = SPA, length = bytes} or [SPA, length]."""
    if isinstance(e, dict):
        return parse_size(e["start"]), parse_size(e.get("length", 512))
    return parse_size(e[0]), parse_size(e[1])


def _nfit_bus(b: dict) -> BusSpec:
    bus = BusSpec(type="nfit")
    for key in ("commands", "dsm_mask", "acpi_slots", "region_probe_order", "provider", "module",
                "revision", "persistence_domain", "flush_hints", "fw_activate", "ars_seconds",
                "clear_err_unit"):
        if key in b:
            setattr(bus, key, b[key])
    bus.media_errors = [_media_error(e) for e in b.get("media_errors", [])]
    bus.dimms = [_dimm(d, i) for i, d in enumerate(b.get("dimm", []))]
    bus.regions = [_region(r) for r in b.get("region", [])]
    names = {d.name for d in bus.dimms}
    for r in bus.regions:
        missing = set(r.dimms) - names
        if missing:
            raise ValueError(f"region at {r.spa:#x} names unknown DIMMs {sorted(missing)}")
    return bus


# -- platform pmem: e820 (memmap=), virtio-pmem, of_pmem ----------------------

@dataclass
class PmemRangeSpec:
    """A range of system physical address space without DIMMs behind it."""

    start: int
    size: int
    numa_node: int = 0
    target_node: int = 0
    ramdax: bool = False           # a RAM carve-out meant to be bound to ramdax (6.19)


@dataclass
class E820BusSpec:
    """Legacy pmem (E820 type 12 / ``memmap=nn!ss``): one platform device
    ``e820_pmem`` for all ranges.  ``driver_override`` presets the device's
    override at boot (as driverctl does), e.g. "ramdax"."""

    type: str = "e820"
    ranges: list[PmemRangeSpec] = field(default_factory=list)
    driver_override: str | None = None


@dataclass
class VirtioPmemSpec:
    """One virtio-pmem-pci device: its PCI function and virtio index."""

    type: str = "virtio-pmem"
    start: int = 0
    size: int = 0
    pci: str = "0000:00:04.0"
    index: int = 0                 # virtioN
    numa_node: int = -1
    target_node: int = 0


@dataclass
class OfPmemSpec:
    """One device-tree ``pmem-region`` node: one platform device, a region per ``reg``."""

    type: str = "of_pmem"
    node: str = ""                 # node name, default "pmem@<first reg start>"
    compatible: str = "pmem-region"
    volatile: bool = False
    numa_node: int = -1            # numa-node-id property; -1: none
    ranges: list[PmemRangeSpec] = field(default_factory=list)
    driver_override: str | None = None


def _range(r: dict) -> PmemRangeSpec:
    spec = PmemRangeSpec(start=parse_size(r["start"]), size=parse_size(r["size"]))
    for key, value in r.items():
        if key in ("start", "size"):
            continue
        if not hasattr(spec, key):
            raise ValueError(f"unknown range key {key!r}")
        setattr(spec, key, value)
    if spec.size <= 0:
        raise ValueError(f"range at {spec.start:#x} has no size")
    return spec


def _check_keys(b: dict, allowed: set[str], what: str) -> None:
    unknown = set(b) - allowed - {"type"}
    if unknown:
        raise ValueError(f"unknown {what} bus keys {sorted(unknown)}")


def _e820_bus(b: dict) -> E820BusSpec:
    _check_keys(b, {"range", "driver_override"}, "e820")
    bus = E820BusSpec(ranges=[_range(r) for r in b.get("range", [])],
                      driver_override=b.get("driver_override"))
    if not bus.ranges:
        raise ValueError("an e820 bus needs at least one [[bus.range]]")
    return bus


def _virtio_pmem_bus(b: dict) -> VirtioPmemSpec:
    _check_keys(b, {"start", "size", "pci", "index", "numa_node", "target_node"}, "virtio-pmem")
    spec = VirtioPmemSpec(start=parse_size(b["start"]), size=parse_size(b["size"]))
    for key in ("pci", "index", "numa_node", "target_node"):
        if key in b:
            setattr(spec, key, b[key])
    return spec


def _of_pmem_bus(b: dict) -> OfPmemSpec:
    _check_keys(b, {"node", "compatible", "volatile", "numa_node", "reg", "driver_override"}, "of_pmem")
    spec = OfPmemSpec(ranges=[_range(r) for r in b.get("reg", [])])
    for key in ("node", "compatible", "volatile", "numa_node", "driver_override"):
        if key in b:
            setattr(spec, key, b[key])
    if not spec.ranges:
        raise ValueError("an of_pmem bus needs at least one [[bus.reg]]")
    if not spec.node:
        spec.node = f"pmem@{spec.ranges[0].start:x}"
    return spec


# [[bus]] parsers by ``type``; providers of other bus types add theirs here.
BUS_PARSERS = {"nfit": _nfit_bus, "e820": _e820_bus, "virtio-pmem": _virtio_pmem_bus,
               "of_pmem": _of_pmem_bus}


# -- soft-reserved memory (dax_hmem) -------------------------------------------

@dataclass
class SoftReservedSpec:
    """A range of "specific purpose" memory (EFI_MEMORY_SP, or e820 type
    0xefffffff from ``memmap=nn%ss-1+0xefffffff``): dax_hmem makes a dax
    region of it.  ``numa_node`` is where the kernel puts the ``hmem.N``
    device (numa_map_to_online_node of the target); default: the target."""

    start: int
    size: int
    target_node: int = 0
    numa_node: int | None = None


def _soft_reserved(items: list) -> list[SoftReservedSpec]:
    out = []
    for r in items:
        unknown = set(r) - {"start", "size", "target_node", "numa_node"}
        if unknown:
            raise ValueError(f"unknown soft_reserved keys {sorted(unknown)}")
        spec = SoftReservedSpec(start=parse_size(r["start"]), size=parse_size(r["size"]),
                                target_node=int(r.get("target_node", 0)),
                                numa_node=int(r["numa_node"]) if "numa_node" in r else None)
        if spec.size <= 0:
            raise ValueError(f"soft_reserved range at {spec.start:#x} has no size")
        out.append(spec)
    return out


# Other top-level tables that are parsed here for their providers
# (machine.SECTION_PROVIDERS); unknown ones stay raw in Topology.sections.
SECTION_PARSERS = {"soft_reserved": _soft_reserved}


def parse(text: str, source: str = "") -> Topology:
    data = tomllib.loads(text)
    topo = Topology(kernel=str(data.get("kernel", NEWEST)), source=source)
    for b in data.get("bus", []):
        kind = b.get("type", "nfit")
        if kind not in BUS_PARSERS:
            raise ValueError(f"unknown bus type {kind!r} (known: {', '.join(sorted(BUS_PARSERS))})")
        topo.buses.append(BUS_PARSERS[kind](b))
    topo.sections = {k: SECTION_PARSERS[k](v) if k in SECTION_PARSERS else v
                     for k, v in data.items() if k not in ("kernel", "bus")}
    return topo


def load(path: str) -> Topology:
    with open(path, "rb") as f:
        return parse(f.read().decode(), os.path.abspath(path))


def default_path() -> str:
    """The built-in default topology shipped with the package."""
    return os.path.join(os.path.dirname(__file__), "data", "default.toml")
