"""NUMA nodes (drivers/base/node.c): ``/sys/devices/system/node``.

The root device ``node`` (subsystem "node") has the node masks:
``possible`` (every node the firmware described), ``online`` (nodes with
a pgdat: memory present, even if not online yet, or CPUs), ``has_memory``
(N_MEMORY: some memory online), ``has_normal_memory`` (some of it in a
kernel zone), ``has_cpu`` and ``has_generic_initiator``, printed as
cpulist-style ranges.  Each online node is a device ``nodeN`` with
``cpumap``/``cpulist``, ``distance`` (to every *online* node), ``meminfo``,
``numastat``, ``vmstat``, ``compact``, ``hugepages/``, ``x86/``, links to
its CPUs and memory blocks, and, where the HMAT described the node,
``accessN/`` (initiators, targets, performance) and ``memory_side_cache/``
(see acpi/hmat.py).

A memory-only node that gets memory at runtime (kmem) is registered when
the memory is added and unregistered when the last of it is removed; the
links other nodes' ``accessN/targets/`` hold to it stay behind, dangling,
as the kernel leaves them.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from fakesys.errors import Errno
from fakesys.kernel.base.bus import Bus
from fakesys.kernel.base.core import (
    RO, WO, Attribute, AttributeGroup, Device, device_add, device_del,
)
from fakesys.kernel.mm import meminfo as mi
from fakesys.sysfs.tree import Dir, File, Link

if TYPE_CHECKING:
    from fakesys.kernel.kernel import Kernel
    from fakesys.kernel.bootparam import BootParams, NumaNode

LOCAL_DISTANCE = 10
REMOTE_DISTANCE = 20
PAGE_KB = 4


def nodelist(ids) -> str:
    """``%*pbl``: "0-2,4", "" for an empty set."""
    ids = sorted(set(ids))
    out, i = [], 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        out.append(f"{ids[i]}" if i == j else f"{ids[i]}-{ids[j]}")
        i = j + 1
    return ",".join(out)


def bitmap_hex(ids, nbits: int) -> str:
    """``%*pb``: hex, 32-bit groups separated by commas, the first one as
    wide as the bits it holds."""
    mask = 0
    for i in ids:
        mask |= 1 << i
    nbits = max(nbits, 1)
    groups = []
    for g in range((nbits + 31) // 32):
        groups.append((mask >> (32 * g)) & 0xFFFFFFFF)
    groups.reverse()
    top_bits = nbits % 32 or 32
    first = f"{groups[0]:0{(top_bits + 3) // 4}x}"
    return ",".join([first] + [f"{g:08x}" for g in groups[1:]])


# A device whose runtime PM has no callbacks (pm_runtime_no_callbacks()):
# its power/ directory lacks control, autosuspend_delay_ms and the times.
POWER_NOCB_GROUP = AttributeGroup([
    Attribute("async", 0o644, lambda d: "disabled\n", lambda d, b: None),
    RO("runtime_active_kids", lambda d: "0\n"),
    RO("runtime_enabled", lambda d: "disabled\n"),
    RO("runtime_status", lambda d: "unsupported\n"),
    RO("runtime_usage", lambda d: "0\n"),
], name="power")


class SubsysRoot(Device):
    """The device of ``subsys_system_register()``/``subsys_virtual_register()``:
    /sys/devices/system/NAME (or /sys/devices/virtual/NAME), no subsystem link."""

    pm = True

    def __init__(self, kernel: "Kernel", name: str, parent: Dir, groups=()) -> None:
        super().__init__(kernel, name, parent)
        self.groups = list(groups)


class NodeDevice(Device):
    pm = True

    def __init__(self, nodes: "Nodes", nid: int) -> None:
        super().__init__(nodes.kernel, f"node{nid}", nodes.root, bus=nodes.bus)
        self.nodes = nodes
        self.nid = nid
        self.groups = [NODE_GROUP]
        self.access: dict[int, Device] = {}
        self.cache_root: Device | None = None


def _node(d: Device) -> NodeDevice:
    assert isinstance(d, NodeDevice)
    return d


NODE_GROUP = AttributeGroup([
    RO("cpumap", lambda d: f"{bitmap_hex(_node(d).nodes.cpus_of(_node(d).nid), _node(d).nodes.nr_cpu_ids)}\n"),
    RO("cpulist", lambda d: f"{nodelist(_node(d).nodes.cpus_of(_node(d).nid))}\n"),
    RO("meminfo", lambda d: _node(d).nodes.meminfo_show(_node(d).nid)),
    RO("numastat", lambda d: _node(d).nodes.numastat_show(_node(d).nid)),
    RO("distance", lambda d: _node(d).nodes.distance_show(_node(d).nid)),
    RO("vmstat", lambda d: _node(d).nodes.vmstat_show(_node(d).nid)),
    WO("compact", lambda d, b: None),
])

NUMASTAT = ("numa_hit", "numa_miss", "numa_foreign", "interleave_hit", "local_node", "other_node")

# node vmstat (6.1): zone counters, then NUMA events, then node counters
VMSTAT = (
    "nr_free_pages nr_zone_inactive_anon nr_zone_active_anon nr_zone_inactive_file "
    "nr_zone_active_file nr_zone_unevictable nr_zone_write_pending nr_mlock nr_bounce nr_zspages "
    "nr_free_cma numa_hit numa_miss numa_foreign numa_interleave numa_local numa_other "
    "nr_inactive_anon nr_active_anon nr_inactive_file nr_active_file nr_unevictable "
    "nr_slab_reclaimable nr_slab_unreclaimable nr_isolated_anon nr_isolated_file workingset_nodes "
    "workingset_refault_anon workingset_refault_file workingset_activate_anon "
    "workingset_activate_file workingset_restore_anon workingset_restore_file "
    "workingset_nodereclaim nr_anon_pages nr_mapped nr_file_pages nr_dirty nr_writeback "
    "nr_writeback_temp nr_shmem nr_shmem_hugepages nr_shmem_pmdmapped nr_file_hugepages "
    "nr_file_pmdmapped nr_anon_transparent_hugepages nr_vmscan_write nr_vmscan_immediate_reclaim "
    "nr_dirtied nr_written nr_throttled_written nr_kernel_misc_reclaimable nr_foll_pin_acquired "
    "nr_foll_pin_released nr_kernel_stack nr_page_table_pages nr_sec_page_table_pages "
    "nr_swapcached pgpromote_success pgpromote_candidate").split()

HUGEPAGE_SIZES = (("hugepages-1048576kB", True), ("hugepages-2048kB", False))


class Nodes:
    """The node states, the node devices, per-node memory accounting."""

    def __init__(self, kernel: "Kernel", spec: "BootParams") -> None:
        self.kernel = kernel
        self.spec = spec
        self.bus = kernel.register_bus(Bus(kernel, "node"))
        system = kernel.sys_devices.mkdir("system")
        self.root_dev = SubsysRoot(kernel, "node", system, [ROOT_GROUP])
        self.root_dev.nodes = self  # type: ignore[attr-defined]
        device_add(self.root_dev)
        self.root = self.root_dev
        self.possible: set[int] = {n.id for n in spec.nodes}
        self.online: set[int] = set()
        self.has_memory: set[int] = set()
        self.has_normal_memory: set[int] = set()
        self.generic_initiators: set[int] = {n.id for n in spec.nodes if n.generic_initiator}
        self.devices: dict[int, NodeDevice] = {}
        self.nr_cpu_ids = max([c + 1 for n in spec.nodes for c in n.cpus] or [1])
        # memory accounting in kB: managed (MemTotal) and free (MemFree) per node,
        # the boot values of the topology plus what hotplug changed
        self.total_kb: dict[int, int] = {}
        self.free_kb: dict[int, int] = {}
        self.delta_total_kb = 0            # what hotplug added to /proc/meminfo's totals
        self.delta_free_kb = 0
        self.register_listeners: list = []  # called with (nid, registered) after node (un)registration

    # -- facts --------------------------------------------------------------

    def node_spec(self, nid: int) -> "NumaNode | None":
        return self.spec.node(nid)

    def cpus_of(self, nid: int) -> list[int]:
        n = self.node_spec(nid)
        return list(n.cpus) if n is not None else []

    @property
    def has_cpu(self) -> set[int]:
        return {n.id for n in self.spec.nodes if n.cpus}

    def distance(self, a: int, b: int) -> int:
        n = self.node_spec(a)
        if n is not None and b in n.distance:
            return n.distance[b]
        return LOCAL_DISTANCE if a == b else REMOTE_DISTANCE

    def fallback_order(self, nid: int) -> list[int]:
        """build_zonelists(): this node, then by distance, nodes with CPUs last
        among equals, then by id."""
        others = sorted((n for n in self.online if n != nid),
                        key=lambda n: (self.distance(nid, n), bool(self.cpus_of(n)), n))
        return ([nid] if nid in self.online else []) + others

    def nearest_online(self, nid: int) -> int:
        """numa_map_to_online_node()."""
        if nid in self.online:
            return nid
        best = min(self.online, key=lambda n: (self.distance(nid, n), n), default=-1)
        return best

    # -- boot -------------------------------------------------------------

    def boot(self, ram_kb: dict[int, int]) -> None:
        """The nodes that have boot memory or CPUs come up online, with their
        boot memory accounted (the topology's snapshot or an estimate)."""
        for n in self.spec.nodes:
            if ram_kb.get(n.id) or n.cpus:
                self.online.add(n.id)
        for nid in sorted(self.online):
            n = self.node_spec(nid)
            kb = ram_kb.get(nid, 0)
            snap = n.meminfo if n is not None else {}
            total = snap.get("MemTotal", kb - kb // 14 if kb else 0)
            self.total_kb[nid] = total
            self.free_kb[nid] = snap.get("MemFree", max(total - 71680, 0) if total else 0)
            if kb:
                self.has_memory.add(nid)
                self.has_normal_memory.add(nid)
        for nid in sorted(self.online):
            self.register_node(nid)

    # -- registration ---------------------------------------------------------

    def set_online(self, nid: int) -> bool:
        """node_set_online() + __register_one_node() for a new node; False if
        it was online already."""
        if nid in self.online:
            return False
        if nid not in self.possible:
            raise Errno(errno.EINVAL, f"node {nid} is not possible")
        self.online.add(nid)
        self.total_kb.setdefault(nid, 0)
        self.free_kb.setdefault(nid, 0)
        self.register_node(nid)
        return True

    def register_node(self, nid: int) -> NodeDevice:
        dev = NodeDevice(self, nid)
        device_add(dev)
        self.devices[nid] = dev
        assert dev.kobj is not None
        hp = dev.kobj.mkdir("hugepages")
        for name, demote in HUGEPAGE_SIZES:
            d = hp.mkdir(name)
            if demote:
                d.add(File("demote", 0o200, None, lambda data: None))
                d.add(File("demote_size", 0o644, lambda: "2048kB\n", lambda data: None))
            d.add(File("free_hugepages", 0o444, lambda: "0\n"))
            d.add(File("nr_hugepages", 0o644, lambda: "0\n", lambda data: None))
            d.add(File("surplus_hugepages", 0o444, lambda: "0\n"))
        dev.kobj.mkdir("x86")
        cpu = getattr(self.kernel, "cpus", None)
        for c in self.cpus_of(nid):
            dev.kobj.add(Link(f"cpu{c}", cpu.devices[c].kobj if cpu is not None and c in cpu.devices
                              else f"../../cpu/cpu{c}"))
        if cpu is not None:
            cpu.link_node(nid, dev)
        for cb in self.register_listeners:
            cb(nid, True)
        return dev

    def try_offline(self, nid: int) -> None:
        """try_offline_node(): a node without memory blocks, spanned pages or
        CPUs goes offline and its device away."""
        mem = getattr(self.kernel, "memory", None)
        if nid not in self.online or self.cpus_of(nid):
            return
        if mem is not None and any(b.nid == nid for b in mem.blocks.values()):
            return
        self.online.discard(nid)
        dev = self.devices.pop(nid, None)
        if dev is not None:
            device_del(dev)
        self.total_kb.pop(nid, None)
        self.free_kb.pop(nid, None)
        for cb in self.register_listeners:
            cb(nid, False)

    # -- accounting ---------------------------------------------------------

    def charge(self, nid: int, kb: int) -> int:
        """Allocate ``kb`` of kernel memory near ``nid`` (the first node in its
        fallback order with memory); returns the node charged."""
        for n in self.fallback_order(nid):
            if n in self.has_memory:
                self.free_kb[n] -= kb
                self.delta_free_kb -= kb
                return n
        return -1

    def uncharge(self, nid: int, kb: int) -> None:
        if nid in self.free_kb:
            self.free_kb[nid] += kb
            self.delta_free_kb += kb

    def pages_online(self, nid: int, kb: int) -> None:
        self.total_kb[nid] = self.total_kb.get(nid, 0) + kb
        self.free_kb[nid] = self.free_kb.get(nid, 0) + kb
        self.delta_total_kb += kb
        self.delta_free_kb += kb

    # -- attributes ---------------------------------------------------------

    def meminfo_values(self, nid: int) -> dict[str, int]:
        n = self.node_spec(nid)
        snap = dict(n.meminfo) if n is not None and n.meminfo else (
            dict(mi.DEFAULT_NODE) if nid == 0 else {})
        total, free = self.total_kb.get(nid, 0), self.free_kb.get(nid, 0)
        snap.update(MemTotal=total, MemFree=free, MemUsed=total - free)
        return snap

    def meminfo_show(self, nid: int) -> str:
        return mi.render_node(nid, self.meminfo_values(nid))

    def numastat_show(self, nid: int) -> str:
        n = self.node_spec(nid)
        snap = n.numastat if n is not None else {}
        return "".join(f"{k} {snap.get(k, 0)}\n" for k in NUMASTAT)

    def vmstat_show(self, nid: int) -> str:
        """The page counters behind meminfo and numastat (meminfo prints them in kB)."""
        m = self.meminfo_values(nid)
        n = self.node_spec(nid)
        stat = n.numastat if n is not None else {}
        pages = {"nr_free_pages": "MemFree", "nr_zone_inactive_anon": "Inactive(anon)",
                 "nr_zone_active_anon": "Active(anon)", "nr_zone_inactive_file": "Inactive(file)",
                 "nr_zone_active_file": "Active(file)", "nr_zone_unevictable": "Unevictable",
                 "nr_mlock": "Mlocked", "nr_inactive_anon": "Inactive(anon)",
                 "nr_active_anon": "Active(anon)", "nr_inactive_file": "Inactive(file)",
                 "nr_active_file": "Active(file)", "nr_unevictable": "Unevictable",
                 "nr_slab_reclaimable": "SReclaimable", "nr_slab_unreclaimable": "SUnreclaim",
                 "nr_anon_pages": "AnonPages", "nr_mapped": "Mapped", "nr_file_pages": "FilePages",
                 "nr_dirty": "Dirty", "nr_writeback": "Writeback", "nr_shmem": "Shmem",
                 "nr_page_table_pages": "PageTables", "nr_sec_page_table_pages": "SecPageTables"}
        values = {k: max(m.get(v, 0), 0) // PAGE_KB for k, v in pages.items()}
        values["nr_kernel_stack"] = m.get("KernelStack", 0)      # counted in kB
        values.update({"numa_hit": stat.get("numa_hit", 0), "numa_miss": stat.get("numa_miss", 0),
                       "numa_foreign": stat.get("numa_foreign", 0),
                       "numa_interleave": stat.get("interleave_hit", 0),
                       "numa_local": stat.get("local_node", 0), "numa_other": stat.get("other_node", 0)})
        return "".join(f"{k} {values.get(k, 0)}\n" for k in VMSTAT)

    def distance_show(self, nid: int) -> str:
        return " ".join(str(self.distance(nid, i)) for i in sorted(self.online)) + "\n"

    def proc_meminfo(self) -> str:
        """/proc/meminfo: the boot snapshot plus what hotplug changed."""
        spec = self.spec
        snap = dict(spec.meminfo) if spec.meminfo else dict(mi.DEFAULT_PROC)
        boot_total = snap.get("MemTotal", sum(self.boot_total_kb().values()))
        boot_free = snap.get("MemFree", sum(self.boot_free_kb().values()))
        boot_avail = snap.get("MemAvailable", boot_free - boot_free // 30)
        total = boot_total + self.delta_total_kb
        free = boot_free + self.delta_free_kb
        snap.update(MemTotal=total, MemFree=free, MemAvailable=boot_avail + self.delta_free_kb,
                    CommitLimit=total // 2)
        return mi.render_proc(snap)

    def boot_total_kb(self) -> dict[int, int]:
        return self._boot_total

    def boot_free_kb(self) -> dict[int, int]:
        return self._boot_free

    def snapshot_boot(self) -> None:
        self._boot_total = dict(self.total_kb)
        self._boot_free = dict(self.free_kb)


ROOT_ATTRS = [
    ("possible", lambda n: n.possible),
    ("online", lambda n: n.online),
    ("has_normal_memory", lambda n: n.has_normal_memory),
    ("has_memory", lambda n: n.has_memory),
    ("has_cpu", lambda n: n.has_cpu),
    ("has_generic_initiator", lambda n: n.generic_initiators),
]


def _mask_attr(name: str, get) -> Attribute:
    return RO(name, lambda d: f"{nodelist(get(d.nodes))}\n")


ROOT_GROUP = AttributeGroup([_mask_attr(name, get) for name, get in ROOT_ATTRS])


def node_init(kernel: "Kernel", spec: "BootParams", ram_kb: dict[int, int]) -> Nodes:
    nodes = Nodes(kernel, spec)
    kernel.nodes = nodes
    return nodes
