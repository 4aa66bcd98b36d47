"""What firmware and the boot loader tell the kernel about the machine
before any driver runs: the e820 map's usable RAM, the NUMA nodes with
their CPUs (SRAT) and distances (SLIT), the HMAT's locality and memory-side
caches, the command line, and the raw ACPI tables it exports.

mm_init() takes a :class:`BootParams`; the platform builds one from a
topology.  Nothing here knows where the values came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RamRange:
    """Boot System RAM: an e820 "usable" entry, on the node SRAT gives it."""

    start: int
    end: int                       # inclusive
    node: int = 0


@dataclass
class HmatLocality:
    """HMAT System Locality Latency and Bandwidth entries from one
    initiator node to the node that holds them (the target)."""

    initiator: int
    read_latency: int = 0          # ns
    write_latency: int = 0
    read_bandwidth: int = 0        # MB/s
    write_bandwidth: int = 0


@dataclass
class HmatCache:
    """An HMAT Memory Side Cache Information entry in front of a node's memory."""

    level: int
    size: int
    line_size: int = 64
    indexing: int = 0              # 0 direct-mapped, 1 complex, 2 other
    write_policy: int = 0          # 0 write-back, 1 write-through, 2 other


@dataclass
class NumaNode:
    """A proximity domain: its CPUs (SRAT), distances (SLIT), HMAT entries,
    and the boot snapshot of its counters the machine shows."""

    id: int
    cpus: list[int] = field(default_factory=list)
    distance: dict[int, int] = field(default_factory=dict)   # to other nodes (SLIT)
    meminfo: dict[str, int] = field(default_factory=dict)   # boot snapshot of nodeN/meminfo
    numastat: dict[str, int] = field(default_factory=dict)
    access: list[HmatLocality] = field(default_factory=list)  # HMAT, this node as target
    caches: list[HmatCache] = field(default_factory=list)
    generic_initiator: bool = False


@dataclass
class BootParams:
    """The machine as early boot sees it.  ``iomem`` lists other firmware
    and platform resources in /proc/iomem format; ``acpi_tables`` maps a
    signature to the table's bytes as the firmware has it."""

    block_size: int = 128 << 20
    auto_online_blocks: str = "offline"
    cmdline: str = ""
    ram: list[RamRange] = field(default_factory=list)
    nodes: list[NumaNode] = field(default_factory=list)
    iomem: str = ""
    meminfo: dict[str, int] = field(default_factory=dict)   # boot snapshot of /proc/meminfo
    acpi_tables: dict[str, bytes] = field(default_factory=dict)

    def node(self, nid: int) -> NumaNode | None:
        return next((n for n in self.nodes if n.id == nid), None)

    @property
    def hmat(self) -> bool:
        return any(n.access or n.caches for n in self.nodes)
