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
from typing import Callable, Protocol

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
    """A /dev entry as devtmpfs would create it.

    ``target``, when set, is the path (relative to /dev) of a host node
    that stands for this one (see :class:`ChrdevNumbers`).
    """

    name: str
    kind: str  # "c" or "b"
    devt: tuple[int, int]
    device: Device
    target: str | None = None


class ChrdevNumbers(Protocol):
    """Who hands out character device numbers instead of register_chrdev().

    Without one, a char device keeps the number its driver gave it (the
    6.1 majors of DYNAMIC_MAJORS).  The daemon installs one so that the
    nodes of the devices it serves are real host char devices whose
    numbers the tools can fstat: ``claim`` returns the (major, minor) to
    publish in ``dev``/``uevent``/``/sys/dev/char`` and the path, relative
    to /dev, of the host node that stands for the device, or None to leave
    the device alone; ``release`` gives the number back when the device
    goes away.  ``name`` is the chrdev region name (e.g. "dimmctl").
    """

    def claim(self, dev: Device, name: str) -> tuple[tuple[int, int], str] | None: ...

    def release(self, dev: Device) -> None: ...


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
        self.chrdev_numbers: ChrdevNumbers | None = None
        self._claimed: dict[Device, tuple[int, int]] = {}  # device -> the devt its driver gave it
        self._next_dynamic_major = min(self._majors.values()) - 1
        self._probe_depth = 0
        self._deferred: list[Callable[[], object]] = []
        self.current_pid = 0  # the process whose write is being served ("current")
        # udev: loads the module a new device's modalias asks for; None loads at once
        self.udev: Callable[[str, Callable[[], None], int], None] | None = None
        self.nd = None   # libnvdimm state, once a provider loads it (nvdimm.bus.libnvdimm)
        self.memregion_ids: set[int] = set()  # lib/memregion.c (memregion.py)
        self.dax = None  # dax core state, set by boot()
        # physical address space (/proc/iomem) and the memory subsystems, set by boot()
        from fakesys.kernel.resource import ResourceTree
        self.iomem = ResourceTree()
        self.proc = self.tree.root.mkdir("proc")
        self.cpus = None
        self.nodes = None
        self.memory = None
        self.memory_tiers = None
        self.hmat = None

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

    def set_chrdev_numbers(self, numbers: ChrdevNumbers | None) -> None:
        """Install (or remove) the char device number provider.

        Devices registered already are renumbered: their ``dev`` file,
        ``/sys/dev/char`` link and devnode move to the new numbers.  Meant
        for a machine that is not yet served (nobody holds a node open).
        """
        nodes = [n for n in self.devnodes.values() if n.kind == "c"]
        for node in nodes:
            self._chrdev_unpublish(node.device)
        self.chrdev_numbers = numbers
        for node in nodes:
            self._chrdev_publish(node.device)

    def _chrdev_claim(self, dev: Device) -> str | None:
        """Let the provider number a char device; returns the node's target."""
        if self.chrdev_numbers is None or dev.devt is None:
            return None
        names = {major: name for name, major in self._majors.items()}
        name = names.get(dev.devt[0])
        got = self.chrdev_numbers.claim(dev, name) if name is not None else None
        if got is None:
            return None
        self._claimed[dev] = dev.devt
        dev.devt = got[0]
        return got[1]

    def _chrdev_release(self, dev: Device) -> None:
        own = self._claimed.pop(dev, None)
        if own is not None:
            dev.devt = own
            assert self.chrdev_numbers is not None
            self.chrdev_numbers.release(dev)

    def _chrdev_publish(self, dev: Device) -> None:
        target = self._chrdev_claim(dev)
        assert dev.devt is not None
        self.sys_dev["c"].add(Link(f"{dev.devt[0]}:{dev.devt[1]}", dev.kobj))
        self._devnode_add(DevNode(dev.devnode(), "c", dev.devt, dev, target))

    def _chrdev_unpublish(self, dev: Device) -> None:
        assert dev.devt is not None
        self.sys_dev["c"].remove(f"{dev.devt[0]}:{dev.devt[1]}")
        self._devnode_del(dev.devnode())
        self._chrdev_release(dev)

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
            if kind == "c":
                self._chrdev_publish(dev)
            else:
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
            if kind == "c":
                self._chrdev_unpublish(dev)
            else:
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
        if drv.module is not None:  # None: a driver without an owner module
            mod = self.module_dir(drv.module or drv.name)
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

    def request_module(self, alias: str, load: Callable[[], None]) -> None:
        """A device whose modalias names a module that is not loaded: udev
        (userspace) loads it, asynchronously, after the add event."""
        if self.udev is None:
            load()
        else:
            self.udev(alias, load, self.current_pid)

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


__all__ = ["Kernel", "DevNode", "ChrdevNumbers", "Attribute", "_attr_file"]
