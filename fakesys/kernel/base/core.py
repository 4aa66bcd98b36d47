"""Devices, their attributes and their sysfs layout (drivers/base/core.c).

Device types declare their attributes in groups with an ``is_visible``
callback, as the kernel does; :func:`device_add` turns them into tree
nodes, adds the standard files (``uevent``, ``dev``, ``subsystem``,
``device``), the ``/sys/bus``, ``/sys/class`` and ``/sys/dev`` links and
the device node, announces the device and offers it to its bus's drivers.
The rest of the driver core is beside it as in drivers/base/: buses in
bus.py, binding in dd.py, drivers in driver.py, classes in class_.py.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from fakesys.errors import Errno
from fakesys.kernel.base import devtmpfs
from fakesys.kernel.base.bus import bus_probe_device
from fakesys.kernel.base.dd import device_release_driver
from fakesys.kernel.base.uevent import ACTIONS, kobject_uevent
from fakesys.kernel.fs import char_dev
from fakesys.kernel.parse import parse_store, strip_newline
from fakesys.sysfs.tree import Dir, File, Link

if TYPE_CHECKING:
    from fakesys.kernel.base.bus import Bus
    from fakesys.kernel.base.class_ import Class
    from fakesys.kernel.base.driver import Driver
    from fakesys.kernel.kernel import Kernel

ShowFn = Callable[["Device"], str]
StoreFn = Callable[["Device", str], None]


@dataclass(frozen=True)
class Attribute:
    """A device attribute: DEVICE_ATTR_RO/RW/WO/ADMIN_RO in one record."""

    name: str
    mode: int
    show: ShowFn | None = None
    store: StoreFn | None = None


def RO(name: str, show: ShowFn) -> Attribute:
    return Attribute(name, 0o444, show)


def RW(name: str, show: ShowFn, store: StoreFn) -> Attribute:
    return Attribute(name, 0o644, show, store)


def ADMIN_RO(name: str, show: ShowFn) -> Attribute:
    return Attribute(name, 0o400, show)


def WO(name: str, store: StoreFn) -> Attribute:
    return Attribute(name, 0o200, None, store)


@dataclass
class AttributeGroup:
    """An attribute group; ``is_visible`` returns the mode to use, 0 to hide."""

    attrs: list[Attribute]
    name: str | None = None
    is_visible: Callable[["Device", Attribute], int] | None = None


@dataclass
class DeviceType:
    """struct device_type: the DEVTYPE name and the groups every instance has."""

    name: str | None
    groups: list[AttributeGroup] = field(default_factory=list)


class Device:
    """struct device.  Subclasses are the kernel's device types."""

    type: DeviceType | None = None
    pm = False  # whether the device has a power/ directory

    def __init__(self, kernel: "Kernel", name: str, parent: "Device | Dir | None" = None,
                 bus: "Bus | None" = None, cls: "Class | None" = None,
                 devt: tuple[int, int] | None = None) -> None:
        self.kernel = kernel
        self.name = name
        self.parent = parent
        self.bus = bus
        self.cls = cls
        self.devt = devt
        self.driver: Driver | None = None
        self.groups: list[AttributeGroup] = []
        self.kobj: Dir | None = None
        self.registered = False
        self.children: list[Device] = []
        self.driver_data: object = None  # dev_set_drvdata(): the bound driver's state

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # -- what subclasses may override -----------------------------------

    def uevent_env(self) -> list[str]:
        """Bus/class specific uevent variables (MODALIAS=, DISKSEQ=, ...)."""
        env: list[str] = []
        if self.bus is not None:
            env += self.bus.uevent_env(self)
        if self.cls is not None:
            env += self.cls.uevent_env(self)
        return env

    def devnode(self) -> str:
        return self.name

    # -- sysfs helpers ----------------------------------------------------

    def uevent_show(self) -> str:
        lines = []
        if self.devt is not None:
            lines += [f"MAJOR={self.devt[0]}", f"MINOR={self.devt[1]}", f"DEVNAME={self.devnode()}"]
        if self.type is not None and self.type.name:
            lines.append(f"DEVTYPE={self.type.name}")
        if self.driver is not None:
            lines.append(f"DRIVER={self.driver.name}")
        lines += self.uevent_env()
        return "".join(line + "\n" for line in lines)

    def uevent_store(self, buf: str) -> None:
        action = strip_newline(buf).split(" ", 1)[0]
        if action not in ACTIONS:
            raise Errno(errno.EINVAL, f"unknown uevent action {action!r}")
        kobject_uevent(self, action)

    @property
    def parent_device(self) -> "Device | None":
        return self.parent if isinstance(self.parent, Device) else None

    def all_groups(self) -> Iterator[AttributeGroup]:
        if self.type is not None:
            yield from self.type.groups
        yield from self.groups

    def refresh_group(self, group: AttributeGroup) -> None:
        """sysfs_update_group(): re-evaluate ``is_visible`` for one group."""
        if self.kobj is None:
            return
        _populate_group(self, self.kobj, group, update=True)


def _attr_file(dev: Device, attr: Attribute, mode: int) -> File:
    show = (lambda: attr.show(dev)) if attr.show is not None else None
    store = None
    if attr.store is not None:
        def store(data: bytes) -> None:
            attr.store(dev, parse_store(data))
    return File(attr.name, mode, show, store)


def _populate_group(dev: Device, kobj: Dir, group: AttributeGroup, update: bool = False) -> None:
    where = kobj.mkdir(group.name) if group.name else kobj
    for attr in group.attrs:
        mode = attr.mode
        if group.is_visible is not None:
            mode = group.is_visible(dev, attr)
        existing = where.get(attr.name)
        if update and existing is not None:
            if mode and existing.mode == mode:
                continue
            where.remove(attr.name)
        if mode:
            where.add(_attr_file(dev, attr, mode))


POWER_GROUP = AttributeGroup([
    Attribute("async", 0o644, lambda d: "disabled\n", lambda d, b: None),
    Attribute("autosuspend_delay_ms", 0o644, lambda d: _eio(), lambda d, b: _eio()),
    Attribute("control", 0o644, lambda d: "auto\n", lambda d, b: None),
    RO("runtime_active_kids", lambda d: "0\n"),
    RO("runtime_active_time", lambda d: "0\n"),
    RO("runtime_enabled", lambda d: "disabled\n"),
    RO("runtime_status", lambda d: "unsupported\n"),
    RO("runtime_suspended_time", lambda d: "0\n"),
    RO("runtime_usage", lambda d: "0\n"),
], name="power")


def _eio() -> str:
    raise Errno(errno.EIO)


def iter_devices(devs: Iterable[Device], kind: type) -> Iterator:
    return (d for d in devs if isinstance(d, kind))


def _is_block(dev: Device) -> bool:
    return dev.cls is not None and dev.cls.name == "block"


def device_add(dev: Device, probe: bool = True) -> Device:
    """device_add(): sysfs directory, attributes, links, devnode, uevent, probe."""
    kernel = dev.kernel
    parent_dir = get_device_parent(dev)
    kobj = Dir(dev.name)
    dev.kobj = kobj
    kobj.add(File("uevent", 0o644, dev.uevent_show,
                  lambda b: dev.uevent_store(b.split(b"\0")[0].decode(errors="replace"))))
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
        if _is_block(dev):
            kernel.sys_dev["b"].add(Link(f"{dev.devt[0]}:{dev.devt[1]}", kobj))
            devtmpfs.devtmpfs_create_node(kernel, devtmpfs.DevNode(dev.devnode(), "b", dev.devt, dev))
        else:
            char_dev.chrdev_publish(dev)
    if dev.parent_device is not None:
        dev.parent_device.children.append(dev)
    dev.registered = True
    kobject_uevent(dev, "add")
    if probe:
        bus_probe_device(dev)
    return dev


def device_del(dev: Device) -> None:
    """device_del(): unbind (the driver's remove unregisters what it made
    below, as platform drivers unregister their nvdimm bus), delete what
    children remain, then undo everything device_add did."""
    if not dev.registered:
        return
    if dev.driver is not None:
        device_release_driver(dev)
    for child in list(dev.children):
        device_del(child)
    dev.registered = False
    kobject_uevent(dev, "remove")
    if dev.devt is not None:
        if _is_block(dev):
            dev.kernel.sys_dev["b"].remove(f"{dev.devt[0]}:{dev.devt[1]}")
            devtmpfs.devtmpfs_delete_node(dev.kernel, dev.devnode())
        else:
            char_dev.chrdev_unpublish(dev)
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


def get_device_parent(dev: Device) -> Dir:
    """get_device_parent(): where the device's directory goes, with the
    class "glue" directory between a bus parent and a class device."""
    kernel = dev.kernel
    parent = dev.parent
    if isinstance(parent, Dir):
        return parent
    if parent is None:
        if dev.cls is not None:
            return kernel.sys_devices.mkdir("virtual").mkdir(dev.cls.name)
        return kernel.sys_devices
    assert parent.kobj is not None, f"{parent} is not registered"
    if dev.cls is not None and parent.cls is None:
        return parent.kobj.mkdir(dev.cls.name)
    return parent.kobj
