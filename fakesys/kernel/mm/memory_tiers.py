"""Memory tiers (mm/memory-tiers.c): ``/sys/devices/virtual/memory_tiering``.

Every node with memory has a memory type, whose *abstract distance*
(adistance) says how far the memory is from the CPUs: DRAM is
``MEMTIER_ADISTANCE_DRAM`` (4 * 128 + 64 = 576), the memory kmem hot-adds
defaults to five times that (2880).  Types whose adistance falls in the
same chunk of 128 share a tier, ``memory_tierN`` with N = adistance >> 7:
DRAM is ``memory_tier4``, default kmem memory ``memory_tier22``.  A node
is listed in its tier's ``nodelist`` while it has memory online (the
memory notifier adds it when its first block comes online and drops it
when the last goes offline); a tier device exists while it lists a node.

Versions: 6.1 gives every node with memory at boot the DRAM type and kmem
its fixed one.  From 6.7 kmem asks the platform (HMAT) for the node's
performance and computes the adistance relative to the DRAM nodes'
(``mt_perf_to_adistance``); from 6.10 CPU-less boot nodes get theirs the
same way at late init instead of the DRAM type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fakesys.kernel.base.bus import Bus
from fakesys.kernel.base.core import RO, AttributeGroup, Device, device_add, device_del
from fakesys.kernel.base.node import SubsysRoot, nodelist

if TYPE_CHECKING:
    from fakesys.kernel.base.memory import MemoryNotify
    from fakesys.kernel.kernel import Kernel

MEMTIER_CHUNK_BITS = 7
MEMTIER_ADISTANCE_DRAM = (4 << MEMTIER_CHUNK_BITS) + (1 << (MEMTIER_CHUNK_BITS - 1))
MEMTIER_DEFAULT_DAX_ADISTANCE = MEMTIER_ADISTANCE_DRAM * 5


class MemoryTier(Device):
    pm = True

    def __init__(self, tiers: "MemoryTiers", tid: int) -> None:
        super().__init__(tiers.kernel, f"memory_tier{tid}", tiers.root, bus=tiers.bus)
        self.tiers = tiers
        self.tid = tid
        self.groups = [TIER_GROUP]


TIER_GROUP = AttributeGroup([
    RO("nodelist", lambda d: f"{nodelist(d.tiers.nodes_of(d.tid))}\n"),
])


class MemoryTiers:
    def __init__(self, kernel: "Kernel") -> None:
        self.kernel = kernel
        self.bus = kernel.register_bus(Bus(kernel, "memory_tiering"))
        self.root = SubsysRoot(kernel, "memory_tiering", kernel.sys_devices.mkdir("virtual"))
        device_add(self.root)
        self.memtype: dict[int, int] = {}     # node -> adistance of its memory type
        self.members: set[int] = set()        # nodes set in their type's node mask
        self.devices: dict[int, MemoryTier] = {}

    def tier_of(self, adist: int) -> int:
        return adist >> MEMTIER_CHUNK_BITS

    def nodes_of(self, tid: int) -> list[int]:
        return sorted(n for n in self.members if self.tier_of(self.memtype[n]) == tid)

    # -- node types -----------------------------------------------------------

    def init_node_memory_type(self, nid: int, adist: int) -> None:
        """A node keeps the first memory type it is given."""
        self.memtype.setdefault(nid, adist)

    def clear_node_memory_type(self, nid: int, adist: int) -> None:
        """clear_node_memory_type(): only the type's owner drops it, and only
        while the node has no memory online."""
        if self.memtype.get(nid) == adist and nid not in self.members:
            del self.memtype[nid]

    def set_node_memory_tier(self, nid: int) -> None:
        if nid not in self.kernel.nodes.has_memory:
            return
        self.memtype.setdefault(nid, MEMTIER_ADISTANCE_DRAM)
        self.members.add(nid)
        self.sync()

    def clear_node_memory_tier(self, nid: int) -> None:
        self.members.discard(nid)
        self.sync()

    def sync(self) -> None:
        """Tier devices for the tiers that list a node, and no others."""
        wanted = {self.tier_of(self.memtype[n]) for n in self.members}
        for tid in sorted(set(self.devices) - wanted):
            device_del(self.devices.pop(tid))
        for tid in sorted(wanted - set(self.devices)):
            dev = MemoryTier(self, tid)
            device_add(dev)
            self.devices[tid] = dev

    # -- memory notifier --------------------------------------------------------

    def memory_event(self, action: str, arg: "MemoryNotify") -> None:
        if arg.status_change_nid < 0:
            return
        if action == "online":
            self.set_node_memory_tier(arg.status_change_nid)
        elif action == "offline":
            self.clear_node_memory_tier(arg.status_change_nid)

    # -- abstract distance ------------------------------------------------------

    def perf_to_adistance(self, perf, dram) -> int | None:
        """mt_perf_to_adistance(): proportional to latency, inversely to bandwidth."""
        if dram is None:
            return None
        lat = perf.read_latency + perf.write_latency
        bw = perf.read_bandwidth + perf.write_bandwidth
        dlat = dram.read_latency + dram.write_latency
        dbw = dram.read_bandwidth + dram.write_bandwidth
        if not lat or not bw or not dlat or not dbw:
            return None
        return MEMTIER_ADISTANCE_DRAM * lat // dlat * dbw // bw

    def calc_adistance(self, nid: int, default: int) -> int:
        """mt_calc_adistance(): the HMAT's answer if it has one (6.7+)."""
        if not self.kernel.version.memtier_adistance_from_hmat:
            return default
        hmat = getattr(self.kernel, "hmat", None)
        if hmat is None:
            return default
        adist = self.perf_to_adistance(hmat.cpu_perf(nid), hmat.default_dram_perf())
        return default if adist is None else adist


def memory_tiers_init(kernel: "Kernel") -> MemoryTiers:
    """memory_tier_init() and memory_tier_late_init(): every node with memory
    gets a type (DRAM, or from 6.10 the HMAT's for CPU-less nodes), then its tier."""
    tiers = MemoryTiers(kernel)
    kernel.memory_tiers = tiers
    nodes = kernel.nodes
    for nid in sorted(nodes.has_memory):
        if kernel.version.memtier_cpuless_from_hmat and nid not in nodes.has_cpu:
            tiers.init_node_memory_type(nid, tiers.calc_adistance(nid, MEMTIER_ADISTANCE_DRAM))
        else:
            tiers.init_node_memory_type(nid, MEMTIER_ADISTANCE_DRAM)
        tiers.set_node_memory_tier(nid)
    kernel.memory.notifiers.append(tiers.memory_event)
    return tiers
