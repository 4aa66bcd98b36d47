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

from fakesys import DEFAULT_TOPOLOGY
from fakesys.kernel.acpi.nfit_table import NfitDimmInfo, NfitInfo, NfitSpaInfo
from fakesys.kernel.bootparam import HmatCache, HmatLocality, NumaNode, RamRange
from fakesys.kernel.version import NEWEST

_SUFFIX = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(value: int | str) -> int:
    if isinstance(value, int):
        return value
    text = value.strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in _SUFFIX:
        return int(float(text[:-1]) * _SUFFIX[text[-1]])
    return int(text, 0)


@dataclass
class DimmSpec(NfitDimmInfo):
    """A topology's DIMM: what its NFIT entries say, and its label area."""

    label_size: int = 128 << 10    # 0: no label area
    labels: str = "blank"          # blank | v1.1 | v1.2 (initialized as ndctl init-labels does)


@dataclass
class RegionSpec(NfitSpaInfo):
    """A topology's region: an NFIT SPA range (``dpa`` defaults to 0 per
    mapping; ``volatile`` makes an nd_volatile region, no DIMMs needed)."""


@dataclass
class BusSpec(NfitInfo):
    """A topology's ``type = "nfit"`` bus: what its NFIT says, its DIMMs and
    regions, and where it comes from."""

    type: str = "nfit"
    dimms: list[DimmSpec] = field(default_factory=list)
    regions: list[RegionSpec] = field(default_factory=list)
    provider: str = ""             # a platform device to hang off instead of ACPI0012 (nfit_test.N)
    module: str = ""               # loaded by "modprobe MODULE" in the fake, not at boot


@dataclass
class Topology:
    kernel: str = NEWEST
    buses: list = field(default_factory=list)  # BusSpec for nfit; other types bring their own spec
    sections: dict = field(default_factory=dict)  # other top-level tables, for their providers
    source: str = ""
    golden: str = ""  # the recorded session (../shared/golden/NAME) whose machine this is

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


# -- the machine: boot RAM, NUMA nodes, HMAT, /proc snapshots -------------------

CACHE_INDEXING = {"direct": 0, "complex": 1, "none": 2}
CACHE_POLICY = {"write-back": 0, "write-through": 1, "none": 2}


@dataclass
class MachineSpec:
    """A topology's ``[machine]``: what the firmware and the kernel's early
    boot make of the machine (machine.boot_params() turns it into the
    kernel's BootParams).  ``acpi_tables`` names files, relative to
    ``source_dir``.

    ``explicit`` is False for the default (QEMU ``-machine pc -m 2G -smp
    2`` layout) that a topology without a ``[machine]`` table gets."""

    block_size: int = 128 << 20
    auto_online_blocks: str = "offline"
    cmdline: str = ""
    ram: list[RamRange] = field(default_factory=list)
    nodes: list[NumaNode] = field(default_factory=list)
    iomem: str = ""                # other firmware/platform resources, /proc/iomem format
    meminfo: dict[str, int] = field(default_factory=dict)   # boot snapshot of /proc/meminfo
    acpi_tables: dict[str, str] = field(default_factory=dict)  # signature -> file (firmware's own)
    explicit: bool = True
    source_dir: str = ""           # where relative file names are looked up


def _cpulist(value) -> list[int]:
    """[0, 1] or "0-1,4" -> [0, 1, 4]."""
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [int(v) for v in value]
    out: list[int] = []
    for part in str(value).split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def _counters(table: dict, what: str) -> dict[str, int]:
    if not isinstance(table, dict):
        raise ValueError(f"{what} must be a table of counters")
    return {str(k): int(v) for k, v in table.items()}


def _node(n: dict) -> NumaNode:
    unknown = set(n) - {"id", "cpus", "distance", "meminfo", "numastat", "access", "cache",
                        "generic_initiator"}
    if unknown:
        raise ValueError(f"unknown machine.node keys {sorted(unknown)}")
    spec = NumaNode(id=int(n["id"]), cpus=_cpulist(n.get("cpus", [])),
                    meminfo=_counters(n.get("meminfo", {}), "meminfo"),
                    numastat=_counters(n.get("numastat", {}), "numastat"),
                    generic_initiator=bool(n.get("generic_initiator", False)))
    dist = n.get("distance", {})
    if isinstance(dist, list):             # one entry per node id, as numactl prints them
        spec.distance = {i: int(d) for i, d in enumerate(dist)}
    else:
        spec.distance = {int(k): int(v) for k, v in dist.items()}
    for a in n.get("access", []):
        bad = set(a) - {"initiator", "read_latency", "write_latency", "read_bandwidth", "write_bandwidth"}
        if bad:
            raise ValueError(f"unknown machine.node.access keys {sorted(bad)}")
        spec.access.append(HmatLocality(**{k: int(v) for k, v in a.items()}))
    for c in n.get("cache", []):
        bad = set(c) - {"level", "size", "line_size", "indexing", "write_policy"}
        if bad:
            raise ValueError(f"unknown machine.node.cache keys {sorted(bad)}")
        indexing = c.get("indexing", "direct")
        policy = c.get("write_policy", "write-back")
        spec.caches.append(HmatCache(
            level=int(c["level"]), size=parse_size(c["size"]), line_size=int(c.get("line_size", 64)),
            indexing=CACHE_INDEXING[indexing] if isinstance(indexing, str) else int(indexing),
            write_policy=CACHE_POLICY[policy] if isinstance(policy, str) else int(policy)))
    return spec


ONLINE_TYPES = ("offline", "online", "online_kernel", "online_movable")


def _machine(m: dict) -> MachineSpec:
    unknown = set(m) - {"block_size", "auto_online_blocks", "cmdline", "ram", "node", "iomem", "meminfo",
                        "acpi_tables"}
    if unknown:
        raise ValueError(f"unknown machine keys {sorted(unknown)}")
    spec = MachineSpec(block_size=parse_size(m.get("block_size", "128M")),
                       auto_online_blocks=str(m.get("auto_online_blocks", "offline")),
                       cmdline=str(m.get("cmdline", "")), iomem=str(m.get("iomem", "")),
                       meminfo=_counters(m.get("meminfo", {}), "meminfo"),
                       acpi_tables={str(k): str(v) for k, v in m.get("acpi_tables", {}).items()})
    if spec.auto_online_blocks not in ONLINE_TYPES:
        raise ValueError(f"auto_online_blocks must be one of {', '.join(ONLINE_TYPES)}")
    if spec.block_size <= 0 or spec.block_size & (spec.block_size - 1):
        raise ValueError("block_size must be a power of two")
    for r in m.get("ram", []):
        start = parse_size(r["start"])
        end = parse_size(r["end"]) if "end" in r else start + parse_size(r["size"]) - 1
        spec.ram.append(RamRange(start, end, int(r.get("node", 0))))
    spec.nodes = [_node(n) for n in m.get("node", [])]
    ids = [n.id for n in spec.nodes]
    if len(set(ids)) != len(ids):
        raise ValueError("machine.node ids must be unique")
    for r in spec.ram:
        if spec.nodes and r.node not in ids:
            raise ValueError(f"RAM at {r.start:#x} is on node {r.node}, which is not declared")
    if not spec.nodes:
        spec.nodes = [NumaNode(id=i, cpus=[0, 1] if i == 0 else [])
                      for i in sorted({r.node for r in spec.ram} | {0})]
    return spec


# The RAM of QEMU `-machine pc -m 2G`: what a topology without [machine] boots with.
QEMU_2G_RAM = [(0x1000, 0x9fbff), (0x100000, 0x7ffdefff)]


def default_machine(topo: "Topology") -> MachineSpec:
    """QEMU's pc machine with 2 GiB and 2 CPUs on node 0, minus any pmem or
    soft-reserved range the topology puts in that RAM; every node the
    topology's ranges name is possible (memory-only, distance 20)."""
    taken: list[tuple[int, int]] = []
    nodes = {0}
    for bus in topo.buses:
        for r in getattr(bus, "regions", []) or []:
            taken.append((r.spa, r.spa + r.size - 1))
            nodes |= {r.numa_node, r.target_node}
        for r in getattr(bus, "ranges", []) or []:
            taken.append((r.start, r.start + r.size - 1))
            nodes |= {r.numa_node, r.target_node}
        if hasattr(bus, "start") and getattr(bus, "size", 0):
            taken.append((bus.start, bus.start + bus.size - 1))
            nodes |= {bus.numa_node, bus.target_node}
    for r in topo.sections.get("soft_reserved", []) or []:
        taken.append((r.start, r.start + r.size - 1))
        nodes |= {r.target_node} | ({r.numa_node} if r.numa_node is not None else set())
    ram: list[RamRange] = []
    for lo, hi in QEMU_2G_RAM:
        pieces = [(lo, hi)]
        for t0, t1 in taken:
            nxt = []
            for a, b in pieces:
                if t1 < a or t0 > b:
                    nxt.append((a, b))
                    continue
                if a < t0:
                    nxt.append((a, t0 - 1))
                if t1 < b:
                    nxt.append((t1 + 1, b))
            pieces = nxt
        ram += [RamRange(a, b, 0) for a, b in pieces]
    spec = MachineSpec(ram=ram, explicit=False,
                       nodes=[NumaNode(id=i, cpus=[0, 1] if i == 0 else [])
                              for i in sorted(n for n in nodes if n >= 0)])
    return spec


# Other top-level tables that are parsed here for their providers
# (machine.SECTION_PROVIDERS); unknown ones stay raw in Topology.sections.
SECTION_PARSERS = {"soft_reserved": _soft_reserved, "machine": _machine}


def parse(text: str, source: str = "") -> Topology:
    data = tomllib.loads(text)
    topo = Topology(kernel=str(data.get("kernel", NEWEST)), source=source,
                    golden=str(data.get("golden", "")))
    for b in data.get("bus", []):
        kind = b.get("type", "nfit")
        if kind not in BUS_PARSERS:
            raise ValueError(f"unknown bus type {kind!r} (known: {', '.join(sorted(BUS_PARSERS))})")
        topo.buses.append(BUS_PARSERS[kind](b))
    topo.sections = {k: SECTION_PARSERS[k](v) if k in SECTION_PARSERS else v
                     for k, v in data.items() if k not in ("kernel", "bus", "golden")}
    if isinstance(topo.sections.get("machine"), MachineSpec):
        topo.sections["machine"].source_dir = os.path.dirname(os.path.abspath(source)) if source else os.getcwd()
    return topo


def load(path: str) -> Topology:
    with open(path, "rb") as f:
        return parse(f.read().decode(), os.path.abspath(path))


def default_path() -> str:
    """The built-in default topology shipped with the package."""
    return DEFAULT_TOPOLOGY
