"""The emulated kernel: one object that owns the sysfs tree and the driver core.

Device registration, driver binding and device nodes go through here,
mirroring device_add()/device_del(), driver_probe_device() and devtmpfs.
Everything is synchronous; the daemon serializes requests, which gives
the same ordering guarantees as the kernel's device locks.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass
from typing import Callable

from fakesys.errors import Errno
from fakesys.kernel.base.core import (
    POWER_GROUP, Attribute, Bus, Class, Device, Driver, _attr_file, _populate_group,
)
from fakesys.kernel.version import KernelVersion
from fakesys.sysfs.kernfs import Dir, File, Link, Tree

log = logging.getLogger("fakesys.kernel")


# The dynamic character majors a Debian 6.1 x86-64 guest hands out to these
# drivers (register_chrdev(0, ...) counts down from 254 in probe order).
DYNAMIC_MAJORS = {"dax": 252, "ndctl": 246, "dimmctl": 245}


@dataclass
class DevNode:
    """A /dev entry as devtmpfs would create it."""

    name: str
    kind: str  # "c" or "b"
    devt: tuple[int, int]
    device: Device


class Kernel:
    def __init__(self, version: KernelVersion | str = "6.19") -> None:
        self.version = version if isinstance(version, KernelVersion) else KernelVersion.parse(version)
        self.tree = Tree()
        self.sys = self.tree.root.mkdir("sys")
        self.dev = self.tree.root.mkdir("dev")
        self.sys_devices = self.sys.mkdir("devices")
        self.sys_bus = self.sys.mkdir("bus")
        self.sys_class = self.sys.mkdir("class")
        self.sys_block = self.sys.mkdir("block")
        self.sys_module = self.sys.mkdir("module")
        sys_dev = self.sys.mkdir("dev")
        self.sys_dev = {"c": sys_dev.mkdir("char"), "b": sys_dev.mkdir("block")}
        self.buses: dict[str, Bus] = {}
        self.classes: dict[str, Class] = {}
        self.devnodes: dict[str, DevNode] = {}
        self.devnode_listeners: list[Callable[[DevNode, bool], None]] = []
        self.uevents: list[tuple[str, str, str]] = []
        self._majors: dict[str, int] = dict(DYNAMIC_MAJORS)
        self._next_dynamic_major = min(self._majors.values()) - 1
        self._probe_depth = 0
        self._deferred: list[Callable[[], object]] = []
        self.nd = None   # libnvdimm state, set by boot()
        self.dax = None  # dax core state, set by boot()

    # -- registries -------------------------------------------------------

    def register_bus(self, bus: Bus) -> Bus:
        self.buses[bus.name] = bus
        return bus

    def register_class(self, cls: Class) -> Class:
        self.classes[cls.name] = cls
        return cls

    def chrdev_major(self, name: str) -> int:
        """register_chrdev(0, name): dynamic majors are handed out downwards from 254."""
        if name not in self._majors:
            self._majors[name] = self._next_dynamic_major
            self._next_dynamic_major -= 1
        return self._majors[name]

    def module_dir(self, module: str) -> Dir:
        return self.sys_module.mkdir(module)

    # -- devices ----------------------------------------------------------

    def device_add(self, dev: Device, probe: bool = True) -> Device:
        """device_add(): sysfs directory, attributes, links, devnode, uevent, probe."""
        parent_dir = self._parent_dir(dev)
        kobj = Dir(dev.name)
        dev.kobj = kobj
        kobj.add(File("uevent", 0o644, dev.uevent_show, lambda b: dev.uevent_store(b.split(b"\0")[0].decode(errors="replace"))))
        if dev.devt is not None:
            kobj.add(File("dev", 0o444, lambda: f"{dev.devt[0]}:{dev.devt[1]}\n"))
        subsystem = dev.bus.dir if dev.bus is not None else dev.cls.dir if dev.cls is not None else None
        if subsystem is not None:
            kobj.add(Link("subsystem", subsystem))
        if dev.cls is not None and dev.parent_device is not None:
            kobj.add(Link("device", dev.parent_device.kobj))
        for group in dev.all_groups():
            _populate_group(dev, kobj, group)
        if dev.pm:
            _populate_group(dev, kobj, POWER_GROUP)
        parent_dir.add(kobj)
        if dev.bus is not None:
            if dev.name in dev.bus.devices:
                parent_dir.remove(dev.name)
                raise Errno(errno.EEXIST, f"{dev.bus.name} device {dev.name} exists")
            dev.bus.devices[dev.name] = dev
            dev.bus.devices_dir.add(Link(dev.name, kobj))
        if dev.cls is not None:
            dev.cls.dir.add(Link(dev.name, kobj))
        if dev.devt is not None:
            kind = "b" if dev.cls is not None and dev.cls.name == "block" else "c"
            self.sys_dev[kind].add(Link(f"{dev.devt[0]}:{dev.devt[1]}", kobj))
            self._devnode_add(DevNode(dev.devnode(), kind, dev.devt, dev))
        if dev.parent_device is not None:
            dev.parent_device.children.append(dev)
        dev.registered = True
        self.uevent("add", dev)
        if probe and dev.bus is not None and dev.bus.autoprobe:
            self.device_attach(dev)
        return dev

    def device_del(self, dev: Device) -> None:
        """device_del(): unbind, then undo everything device_add did."""
        if not dev.registered:
            return
        for child in list(dev.children):
            self.device_del(child)
        if dev.driver is not None:
            self.device_release_driver(dev)
        dev.registered = False
        self.uevent("remove", dev)
        if dev.devt is not None:
            kind = "b" if dev.cls is not None and dev.cls.name == "block" else "c"
            self.sys_dev[kind].remove(f"{dev.devt[0]}:{dev.devt[1]}")
            self._devnode_del(dev.devnode())
        if dev.cls is not None:
            dev.cls.dir.remove(dev.name)
        if dev.bus is not None:
            dev.bus.devices.pop(dev.name, None)
            dev.bus.devices_dir.remove(dev.name)
        assert dev.kobj is not None and dev.kobj.parent is not None
        glue = dev.kobj.parent
        glue.remove(dev.name)
        if dev.cls is not None and dev.parent_device is not None and not glue.children:
            assert glue.parent is not None
            glue.parent.remove(glue.name)  # cleanup_glue_dir()
        if dev.parent_device is not None and dev in dev.parent_device.children:
            dev.parent_device.children.remove(dev)

    def _parent_dir(self, dev: Device) -> Dir:
        parent = dev.parent
        if isinstance(parent, Dir):
            return parent
        if parent is None:
            if dev.cls is not None:
                return self.sys_devices.mkdir("virtual").mkdir(dev.cls.name)
            return self.sys_devices
        assert parent.kobj is not None, f"{parent} is not registered"
        if dev.cls is not None and parent.cls is None:
            return parent.kobj.mkdir(dev.cls.name)  # the class "glue" directory
        return parent.kobj

    # -- drivers ----------------------------------------------------------

    def driver_register(self, drv: Driver) -> Driver:
        bus = drv.bus
        d = Dir(drv.name)
        drv.dir = d
        if not drv.suppress_bind_attrs:
            d.add(File("bind", 0o200, None, drv.bind_store))
            d.add(File("unbind", 0o200, None, drv.unbind_store))
        d.add(File("uevent", 0o200, None, lambda data: None))
        module = drv.module or drv.name
        mod = self.module_dir(module)
        d.add(Link("module", mod))
        mod.mkdir("drivers").add(Link(f"{bus.name}:{drv.name}", d))
        bus.drivers_dir.add(d)
        bus.drivers[drv.name] = drv
        for dev in list(bus.devices.values()):
            if dev.driver is None and bus.match(dev, drv):
                self._try_probe(drv, dev)
        return drv

    def device_attach(self, dev: Device) -> bool:
        """__device_attach(): first matching driver whose probe succeeds wins."""
        assert dev.bus is not None
        for drv in list(dev.bus.drivers.values()):
            if dev.driver is None and dev.bus.match(dev, drv):
                if self._try_probe(drv, dev):
                    return True
        return False

    def _try_probe(self, drv: Driver, dev: Device) -> bool:
        try:
            self.driver_probe_device(drv, dev)
            return True
        except Errno as e:
            log.debug("%s: probe of %s failed: %s", drv.name, dev.name, e)
            return False

    def driver_probe_device(self, drv: Driver, dev: Device) -> None:
        """really_probe(): the probe's errno is the caller's (bind_store) errno."""
        if not dev.registered:
            raise Errno(errno.ENODEV, f"{dev.name} is not registered")
        if dev.driver is not None:
            raise Errno(errno.EBUSY, f"{dev.name} already bound")
        dev.driver = drv
        self._probe_depth += 1
        try:
            dev.bus.probe(dev, drv)
        except Errno:
            dev.driver = None
            raise
        else:
            assert dev.kobj is not None and drv.dir is not None
            drv.dir.add(Link(dev.name, dev.kobj))
            dev.kobj.add(Link("driver", drv.dir))
            self.uevent("bind", dev)
        finally:
            self._probe_depth -= 1
            if self._probe_depth == 0:
                self._run_deferred()

    def defer(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` once the outermost probe has finished (async_schedule)."""
        if self._probe_depth == 0:
            fn()
        else:
            self._deferred.append(fn)

    def _run_deferred(self) -> None:
        while self._deferred:
            fn = self._deferred.pop(0)
            try:
                fn()
            except Errno as e:
                log.debug("deferred work failed: %s", e)

    def device_release_driver(self, dev: Device) -> None:
        drv = dev.driver
        if drv is None:
            return
        assert dev.kobj is not None and drv.dir is not None
        drv.dir.remove(dev.name)
        dev.kobj.remove("driver")
        dev.bus.remove(dev, drv)
        dev.driver = None
        self.uevent("unbind", dev)

    # -- devnodes and events -----------------------------------------------

    def _devnode_add(self, node: DevNode) -> None:
        self.devnodes[node.name] = node
        for cb in self.devnode_listeners:
            cb(node, False)

    def _devnode_del(self, name: str) -> None:
        node = self.devnodes.pop(name, None)
        if node is not None:
            for cb in self.devnode_listeners:
                cb(node, True)

    def uevent(self, action: str, dev: Device) -> None:
        path = dev.kobj.path() if dev.kobj is not None else dev.name
        self.uevents.append((action, path, dev.name))
        log.debug("uevent %s %s", action, path)


__all__ = ["Kernel", "DevNode", "Attribute", "_attr_file"]
