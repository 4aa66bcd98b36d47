"""ACPI HMAT (drivers/acpi/numa/hmat.c) and the node attributes it publishes
(drivers/base/node.c: node_set_perf_attrs, register_memory_node_under_compute_node,
node_add_cache).

For every memory target the HMAT describes, two access classes are
computed from the locality data: class 0 over every initiator (CPU or
generic initiator nodes), class 1 over the CPU nodes only.  For each class
the best value of each of read latency, write latency, read bandwidth and
write bandwidth is found in turn, and the initiators that are not the best
for a value are dropped as it goes.  What is published:

* ``nodeT/accessC/initiators/{read,write}_{latency,bandwidth}``: the best
  values (ns, MB/s);
* ``nodeT/accessC/initiators/nodeI`` and ``nodeI/accessC/targets/nodeT``:
  links between the target and each best initiator;
* ``nodeT/memory_side_cache/indexL/{size,line_size,indexing,write_policy}``
  for each cache level in front of the target's memory.

A target is registered once: at boot if its node is online, else when its
node first gets memory online (the memory notifier).  That is all 6.1
does: when a hot-added node is later removed, its ``accessN`` and
``memory_side_cache`` go with its device, the links to it in the
initiators' ``targets/`` stay, and adding the memory again brings the node
back without any of them (the golden hmat session shows both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fakesys.kernel.base.core import RO, AttributeGroup, Device, device_add
from fakesys.kernel.base.node import POWER_NOCB_GROUP, NodeDevice
from fakesys.sysfs.tree import File, Link

if TYPE_CHECKING:
    from fakesys.kernel.base.memory import MemoryNotify
    from fakesys.kernel.kernel import Kernel
    from fakesys.kernel.bootparam import HmatCache, HmatLocality

ACCESS_CLASSES = (0, 1)     # ACCESS_COORDINATE_LOCAL, ACCESS_COORDINATE_CPU
PERF_ATTRS = ("read_bandwidth", "write_bandwidth", "read_latency", "write_latency")


@dataclass
class Perf:
    read_latency: int = 0
    write_latency: int = 0
    read_bandwidth: int = 0
    write_bandwidth: int = 0


class AccessNode(Device):
    """``accessC``: a child device of the node, with ``initiators/`` and ``targets/``."""

    def __init__(self, node: NodeDevice, access: int) -> None:
        super().__init__(node.kernel, f"access{access}", node)
        self.access = access
        self.groups = [POWER_NOCB_GROUP]


class CacheRoot(Device):
    def __init__(self, node: NodeDevice) -> None:
        super().__init__(node.kernel, "memory_side_cache", node)
        self.groups = [POWER_NOCB_GROUP]


class CacheIndex(Device):
    def __init__(self, root: CacheRoot, cache: "HmatCache") -> None:
        super().__init__(root.kernel, f"index{cache.level}", root)
        self.cache = cache
        self.groups = [CACHE_GROUP, POWER_NOCB_GROUP]


CACHE_GROUP = AttributeGroup([
    RO("indexing", lambda d: f"{d.cache.indexing}\n"),
    RO("line_size", lambda d: f"{d.cache.line_size}\n"),
    RO("size", lambda d: f"{d.cache.size}\n"),
    RO("write_policy", lambda d: f"{d.cache.write_policy}\n"),
])


class Hmat:
    def __init__(self, kernel: "Kernel") -> None:
        self.kernel = kernel
        self.registered: set[int] = set()

    # -- the table ------------------------------------------------------------

    def _locality(self, target: int) -> list["HmatLocality"]:
        n = self.kernel.nodes.node_spec(target)
        return list(n.access) if n is not None else []

    def targets(self) -> list[int]:
        return [n.id for n in self.kernel.nodes.spec.nodes if n.access or n.caches]

    def best(self, target: int, access: int) -> tuple[Perf, list[int]]:
        """hmat_update_target_attrs(): the best initiators of a class and their values."""
        nodes = self.kernel.nodes
        cands = [a for a in self._locality(target)
                 if a.initiator in nodes.has_cpu or (access == 0 and a.initiator in nodes.generic_initiators)]
        perf = Perf()
        for attr, lower_is_better in (("read_latency", True), ("write_latency", True),
                                      ("read_bandwidth", False), ("write_bandwidth", False)):
            values = [getattr(a, attr) for a in cands if getattr(a, attr)]
            if not values:
                continue
            best = min(values) if lower_is_better else max(values)
            setattr(perf, attr, best)
            cands = [a for a in cands if getattr(a, attr) == best]
        return perf, sorted({a.initiator for a in cands})

    def cpu_perf(self, nid: int) -> Perf:
        return self.best(nid, 1)[0]

    def default_dram_perf(self) -> Perf | None:
        """The performance of the DRAM nodes (memory and CPUs), the reference
        for abstract distances; None if they disagree by more than 10%."""
        nodes = self.kernel.nodes
        ref = None
        for nid in sorted(nodes.has_memory & nodes.has_cpu):
            perf = self.cpu_perf(nid)
            if not (perf.read_latency or perf.read_bandwidth):
                continue
            if ref is None:
                ref = perf
                continue
            for attr in PERF_ATTRS:
                a, b = getattr(ref, attr), getattr(perf, attr)
                if abs(a - b) * 10 > a:
                    return None
        return ref

    # -- registration ---------------------------------------------------------

    def register_target(self, nid: int) -> None:
        """hmat_register_target(): once, and only for an online node."""
        nodes = self.kernel.nodes
        if nid in self.registered or nid not in nodes.online or nid not in self.targets():
            return
        node = nodes.devices.get(nid)
        if node is None:
            return
        for access in ACCESS_CLASSES:
            perf, initiators = self.best(nid, access)
            if not self._locality(nid):
                continue
            for init in initiators:
                self._link(init, nid, access)
            self._set_perf(node, access, perf)
        n = nodes.node_spec(nid)
        for cache in sorted(n.caches if n is not None else [], key=lambda c: c.level):
            self._add_cache(node, cache)
        self.registered.add(nid)

    def _access(self, node: NodeDevice, access: int) -> AccessNode:
        """node_init_node_access(): the accessC device, made on first use."""
        dev = node.access.get(access)
        if dev is None or not dev.registered:
            dev = AccessNode(node, access)
            device_add(dev)
            assert dev.kobj is not None
            dev.kobj.mkdir("initiators")
            dev.kobj.mkdir("targets")
            node.access[access] = dev
        return dev

    def _link(self, init: int, target: int, access: int) -> None:
        """register_memory_node_under_compute_node()."""
        nodes = self.kernel.nodes
        init_node, target_node = nodes.devices.get(init), nodes.devices.get(target)
        if init_node is None or target_node is None:
            return
        tdir = self._access(init_node, access).kobj.get("targets")
        if tdir.get(f"node{target}") is None:
            tdir.add(Link(f"node{target}", target_node.kobj))
        idir = self._access(target_node, access).kobj.get("initiators")
        if idir.get(f"node{init}") is None:
            idir.add(Link(f"node{init}", init_node.kobj))

    def _set_perf(self, node: NodeDevice, access: int, perf: Perf) -> None:
        """node_set_perf_attrs()."""
        idir = self._access(node, access).kobj.get("initiators")
        for attr in PERF_ATTRS:
            if idir.get(attr) is None:
                value = getattr(perf, attr)
                idir.add(File(attr, 0o444, lambda v=value: f"{v}\n"))

    def _add_cache(self, node: NodeDevice, cache: "HmatCache") -> None:
        """node_add_cache()."""
        if node.cache_root is None or not node.cache_root.registered:
            node.cache_root = CacheRoot(node)
            device_add(node.cache_root)
        device_add(CacheIndex(node.cache_root, cache))

    # -- memory notifier --------------------------------------------------------

    def memory_event(self, action: str, arg: "MemoryNotify") -> None:
        if action == "online" and arg.status_change_nid >= 0:
            self.register_target(arg.status_change_nid)


def hmat_init(kernel: "Kernel") -> Hmat | None:
    """hmat_init(): register the targets of online nodes, then listen for
    memory coming online on the others.  None without an HMAT."""
    if not kernel.nodes.spec.hmat:
        return None
    hmat = Hmat(kernel)
    kernel.hmat = hmat
    for nid in hmat.targets():
        hmat.register_target(nid)
    kernel.memory.notifiers.append(hmat.memory_event)
    return hmat
