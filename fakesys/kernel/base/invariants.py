"""The driver core's and the tree's invariants (see kernel/invariants.py).

* sysfs: every link under ``sys/`` points at a node still in the tree and
  its relative path resolves to that node; the inode table and the parent
  pointers agree;
* driver core: every device's ``driver`` link and the driver's device
  links agree; ``/sys/bus/*/devices``, ``/sys/class/*`` and ``/sys/dev``
  list exactly the registered devices; every devnode has its /dev entry.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from fakesys.sysfs.tree import Dir, Link, Node

if TYPE_CHECKING:
    from fakesys.kernel.kernel import Kernel


def check(kernel: "Kernel", after_crash: bool = False) -> list[str]:
    return _check_tree(kernel.tree) + _check_links(kernel.tree.root) + _check_drivers(kernel)


def _check_tree(tree) -> list[str]:
    out: list[str] = []
    for ino, node in tree.inodes.items():
        if node.ino != ino:
            out.append(f"inode {ino} maps {node.path()} whose ino is {node.ino}")
    stack: list[Node] = [tree.root]
    reached = 0
    while stack:
        node = stack.pop()
        reached += 1
        if tree.inodes.get(node.ino) is not node:
            out.append(f"{node.path() or '/'}: reachable but not in the inode table")
        if isinstance(node, Dir):
            for name, child in node.children.items():
                if child.name != name or child.parent is not node:
                    out.append(f"{node.path()}/{name}: name or parent pointer disagrees")
                stack.append(child)
    if reached != len(tree.inodes):
        out.append(f"{len(tree.inodes) - reached} inodes are not reachable from the root")
    return out


def _resolve(link: Link) -> Node | None:
    """Follow the link's text from its directory, as the VFS would."""
    return link.parent.resolve(link.readlink()) if link.parent is not None else None


def _check_links(root: Dir) -> list[str]:
    out: list[str] = []
    sys = root.get("sys")
    stack: list[Node] = [sys] if sys is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, Dir):
            stack.extend(node.children.values())
        elif isinstance(node, Link):
            if not isinstance(node.target, Node):
                out.append(f"{node.path()} -> {node.target!r} leaves the tree")
            elif not node.target.attached:
                out.append(f"{node.path()} -> {node.target.path()} dangles")
            else:
                # nodes never move while attached: a link that resolved once
                # (same link, same target, both still attached) still does
                key = (node.ino, node.target.ino)
                if _RESOLVED.get(key) is node:
                    continue
                if _resolve(node) is not node.target:
                    out.append(f"{node.path()} -> {node.readlink()} does not resolve to "
                               f"{node.target.path()}")
                else:
                    if len(_RESOLVED) > 100_000:
                        _RESOLVED.clear()
                    _RESOLVED[key] = node
    return out


_RESOLVED: "weakref.WeakValueDictionary[tuple[int, int], Link]" = weakref.WeakValueDictionary()


def _check_drivers(kernel: "Kernel") -> list[str]:
    out: list[str] = []
    for bus in kernel.buses.values():
        listed = {n.name: n for n in bus.devices_dir.children.values()} if bus.devices_dir else {}
        for name, dev in bus.devices.items():
            if not dev.registered:
                out.append(f"{name}: on bus {bus.name} but not registered")
            node = listed.pop(name, None)
            if not isinstance(node, Link) or node.target is not dev.kobj:
                out.append(f"/sys/bus/{bus.name}/devices/{name} does not point at {name}")
            link = dev.kobj.get("driver") if dev.kobj is not None else None
            if dev.driver is None and link is not None:
                out.append(f"{dev.name}: driver link without a driver")
            if dev.driver is not None:
                if dev.driver.bus is not bus:
                    out.append(f"{dev.name}: bound to {dev.driver.name} of another bus")
                if not isinstance(link, Link) or link.target is not dev.driver.dir:
                    out.append(f"{dev.name}: driver link does not point at {dev.driver.name}")
                if dev.driver.dir is None or dev.driver.dir.get(dev.name) is None:
                    out.append(f"{dev.name}: missing from /sys/bus/{bus.name}/drivers/{dev.driver.name}")
        for name in listed:
            out.append(f"/sys/bus/{bus.name}/devices/{name}: no such device")
        for drv in bus.drivers.values():
            for node in drv.dir.children.values() if drv.dir else ():
                if isinstance(node, Link) and node.name not in ("module",):
                    dev = bus.devices.get(node.name)
                    if dev is None or dev.driver is not drv or node.target is not dev.kobj:
                        out.append(f"/sys/bus/{bus.name}/drivers/{drv.name}/{node.name} is stale")
    for cls in kernel.classes.values():
        for node in cls.dir.children.values():
            if isinstance(node, Link) and isinstance(node.target, Node) and not node.target.attached:
                out.append(f"/sys/class/{cls.name}/{node.name} is stale")
    for kind, d in kernel.sys_dev.items():
        for node in d.children.values():
            if not isinstance(node, Link) or not isinstance(node.target, Node) or not node.target.attached:
                out.append(f"/sys/dev/{'char' if kind == 'c' else 'block'}/{node.name} is stale")
    for name, dn in kernel.devnodes.items():
        if not dn.device.registered:
            out.append(f"/dev/{name}: its device {dn.device.name} is gone")
        if kernel.dev.walk(name) is None:
            out.append(f"/dev/{name}: devnode without a /dev entry")
    return out
