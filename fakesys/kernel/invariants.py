"""Invariants of a live model, checked by one function tests can call.

``check(kernel)`` returns a list of human-readable violations (empty when
all is well):

* no two DPA allocations overlap on a DIMM, and each lies inside the DIMM;
* per region, namespace capacity plus ``available_size`` never exceeds the
  region size;
* every label area parses, and the labels of an enabled label-backed region
  agree with the namespaces shown (uuid, DPA, size) in both directions;
* every enabled region has its seeds, and they are idle;
* every sysfs link resolves to a node that is still in the tree;
* every device's ``driver`` link and the driver's device links agree.
"""

from __future__ import annotations

from fakesys.kernel.kernel import Kernel
from fakesys.sysfs.kernfs import Dir, Link, Node


def check(kernel: Kernel) -> list[str]:
    problems: list[str] = []
    if kernel.nd is not None:
        for bus in kernel.nd.bus.devices.values():
            problems += _check_nd_bus(bus)
    problems += _check_links(kernel.tree.root)
    problems += _check_drivers(kernel)
    return problems


def _check_nd_bus(dev) -> list[str]:
    from fakesys.kernel.nvdimm.bus import NvdimmBus
    if not isinstance(dev, NvdimmBus):
        return []
    out: list[str] = []
    for dimm in dev.nvdimms():
        ndd = dimm.ndd
        if ndd is None:
            continue
        spans = sorted((r.start, r.end, r.name) for r in ndd.dpa)
        for (s1, e1, n1), (s2, e2, n2) in zip(spans, spans[1:]):
            if s2 < e1:
                out.append(f"{dimm.name}: {n1} [{s1:#x},{e1:#x}) overlaps {n2} [{s2:#x},{e2:#x})")
        for s, e, n in spans:
            if s < 0 or e > dimm.media.size:
                out.append(f"{dimm.name}: {n} [{s:#x},{e:#x}) outside the DIMM")
    for region in dev.regions():
        out += _check_region(region)
    return out


def _check_region(region) -> list[str]:
    from fakesys.kernel.nvdimm.bus import ND_DEVICE_NAMESPACE_PMEM
    from fakesys.kernel.nvdimm.dimm import LsaIo, label_id
    from fakesys.kernel.nvdimm.label import LabelArea
    from fakesys.kernel.nvdimm.namespace import NamespacePmem
    out: list[str] = []
    used = sum(ns.capacity for ns in region.namespaces())
    if region.mappings and region.driver is not None and used + region.available_dpa() > region.size:
        out.append(f"{region.name}: namespaces {used} + available {region.available_dpa()} > size {region.size}")
    if region.driver is None:
        return out
    for kind in ("ns_seed", "btt_seed", "pfn_seed", "dax_seed"):
        seed = getattr(region, kind)
        if seed is None:
            if kind != "ns_seed" or region.nstype() == ND_DEVICE_NAMESPACE_PMEM:
                out.append(f"{region.name}: no {kind}")
        elif not seed.registered:
            out.append(f"{region.name}: {kind} {seed.name} is not registered")
        elif kind != "ns_seed" and (seed.driver is not None or getattr(seed, "ndns", None) is not None):
            out.append(f"{region.name}: {kind} {seed.name} is not idle")
    if region.nstype() != ND_DEVICE_NAMESPACE_PMEM:
        return out
    wanted = {}
    for ns in region.namespaces():
        if isinstance(ns, NamespacePmem) and ns.uuid is not None and ns.capacity:
            wanted[ns.uuid] = ns
    for m in region.mappings:
        ndd = m.nvdimm.ndd
        if ndd is None or ndd.labels is None:
            continue
        media = LabelArea(LsaIo(m.nvdimm.lsa))  # what is on media, not the driver's copy
        if not media.validate():
            if wanted:
                out.append(f"{m.nvdimm.name}: no valid label index but namespaces exist")
            continue
        labels = {l.uuid: l for l in media.labels() if l.flags == 0}
        for uuid, ns in wanted.items():
            label = labels.get(uuid)
            res = ndd.resources(label_id(uuid))
            if label is None:
                out.append(f"{m.nvdimm.name}: no label for {ns.name} ({uuid})")
            elif not res or label.dpa != res[0].start or label.rawsize != sum(r.size for r in res):
                out.append(f"{m.nvdimm.name}: label of {ns.name} disagrees with its DPA allocation")
        for uuid in labels:
            if uuid not in wanted:
                out.append(f"{m.nvdimm.name}: label {uuid} belongs to no namespace of {region.name}")
    return out


def _check_links(root: Dir) -> list[str]:
    out: list[str] = []
    stack: list[Node] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, Dir):
            stack.extend(node.children.values())
        elif isinstance(node, Link) and isinstance(node.target, Node) and not node.target.attached:
            out.append(f"{node.path()} -> {node.target.path()} dangles")
    return out


def _check_drivers(kernel: Kernel) -> list[str]:
    out: list[str] = []
    for bus in kernel.buses.values():
        for dev in bus.devices.values():
            link = dev.kobj.get("driver") if dev.kobj is not None else None
            if dev.driver is None and link is not None:
                out.append(f"{dev.name}: driver link without a driver")
            if dev.driver is not None:
                if not isinstance(link, Link) or link.target is not dev.driver.dir:
                    out.append(f"{dev.name}: driver link does not point at {dev.driver.name}")
                if dev.driver.dir is None or dev.driver.dir.get(dev.name) is None:
                    out.append(f"{dev.name}: missing from /sys/bus/{bus.name}/drivers/{dev.driver.name}")
        for drv in bus.drivers.values():
            for node in drv.dir.children.values() if drv.dir else ():
                if isinstance(node, Link) and node.name not in ("module",):
                    dev = bus.devices.get(node.name)
                    if dev is None or dev.driver is not drv:
                        out.append(f"/sys/bus/{bus.name}/drivers/{drv.name}/{node.name} is stale")
    return out
