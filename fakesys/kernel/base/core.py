"""The driver core: devices, buses, drivers, classes and their sysfs layout.

The counterpart of drivers/base/{core,bus,dd,class}.c.  Device types
declare their attributes in groups with an ``is_visible`` callback, as the
kernel does; this module turns them into kernfs nodes, adds the standard
files (``uevent``, ``dev``, ``subsystem``, ``driver``, ``device``), the
``/sys/bus``, ``/sys/class`` and ``/sys/dev`` links, binds drivers on probe
and through ``bind``/``unbind``, and logs uevents.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from fakesys.errors import Errno
from fakesys.sysfs.kernfs import Dir, File, Link, Node

if TYPE_CHECKING:
    from fakesys.kernel.kernel import Kernel

log = logging.getLogger("fakesys.kernel")

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


class StoreBuf(str):
    """The text a store sees, with ``count``: the byte count of the write."""

    count: int


def parse_store(data: bytes) -> StoreBuf:
    """What a C store sees: the buffer up to the first NUL (and the count)."""
    buf = StoreBuf(data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape"))
    buf.count = len(data)
    return buf


def strip_newline(buf: str) -> str:
    """sysfs_streq() semantics: one trailing newline does not count."""
    return buf[:-1] if buf.endswith("\n") else buf


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
        if action not in ("add", "remove", "change", "move", "online", "offline", "bind", "unbind"):
            raise Errno(errno.EINVAL, f"unknown uevent action {action!r}")
        self.kernel.uevent(action, self)

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


class Bus:
    """struct bus_type with its /sys/bus/NAME directory."""

    def __init__(self, kernel: "Kernel", name: str) -> None:
        self.kernel = kernel
        self.name = name
        self.devices: dict[str, Device] = {}
        self.drivers: dict[str, Driver] = {}
        self.autoprobe = True
        self.dir = kernel.sys_bus.mkdir(name)
        self.devices_dir = self.dir.mkdir("devices")
        self.drivers_dir = self.dir.mkdir("drivers")
        self.dir.add(File("drivers_autoprobe", 0o644, self._autoprobe_show, self._autoprobe_store))
        self.dir.add(File("drivers_probe", 0o200, None, self._drivers_probe_store))
        self.dir.add(File("uevent", 0o200, None, lambda data: None))

    def match(self, dev: Device, drv: "Driver") -> bool:
        return False

    def uevent_env(self, dev: Device) -> list[str]:
        return []

    def probe(self, dev: Device, drv: "Driver") -> None:
        """The bus's probe wrapper (e.g. nvdimm_bus_probe); default: the driver's."""
        drv.probe(dev)

    def remove(self, dev: Device, drv: "Driver") -> None:
        drv.remove(dev)

    def find(self, buf: str) -> Device | None:
        return self.devices.get(strip_newline(buf))

    def _autoprobe_show(self) -> str:
        return f"{int(self.autoprobe)}\n"

    def _autoprobe_store(self, data: bytes) -> None:
        s = parse_store(data)
        if s[:1] == "0":
            self.autoprobe = False
        elif s[:1] == "1":
            self.autoprobe = True

    def _drivers_probe_store(self, data: bytes) -> None:
        dev = self.find(parse_store(data))
        if dev is None:
            raise Errno(errno.ENODEV, "no such device")
        if dev.driver is None:
            self.kernel.device_attach(dev)


class Class:
    """struct class with its /sys/class/NAME directory."""

    def __init__(self, kernel: "Kernel", name: str) -> None:
        self.kernel = kernel
        self.name = name
        self.dir = kernel.sys_class.mkdir(name)

    def uevent_env(self, dev: Device) -> list[str]:
        return []


class Driver:
    """struct device_driver: ``probe`` raises Errno to refuse a device."""

    name = ""
    module: str | None = ""  # owning module: "" = same name as the driver, None = no owner
    suppress_bind_attrs = False

    def __init__(self, kernel: "Kernel", bus: Bus) -> None:
        self.kernel = kernel
        self.bus = bus
        self.dir: Dir | None = None

    def probe(self, dev: Device) -> None:
        pass

    def remove(self, dev: Device) -> None:
        pass

    def devices(self) -> list[Device]:
        return [d for d in self.bus.devices.values() if d.driver is self]

    def bind_store(self, data: bytes) -> None:
        dev = self.bus.find(parse_store(data))
        if dev is None or not self.bus.match(dev, self):
            raise Errno(errno.ENODEV, "no such device or driver does not match")
        if dev.driver is not None:
            raise Errno(errno.EBUSY, f"{dev.name} is bound to {dev.driver.name}")
        self.kernel.driver_probe_device(self, dev)

    def unbind_store(self, data: bytes) -> None:
        dev = self.bus.find(parse_store(data))
        if dev is None or dev.driver is not self:
            raise Errno(errno.ENODEV, "device is not bound to this driver")
        self.kernel.device_release_driver(dev)


def iter_devices(devs: Iterable[Device], kind: type) -> Iterator:
    return (d for d in devs if isinstance(d, kind))


__all__ = [
    "Attribute", "AttributeGroup", "DeviceType", "Device", "Bus", "Class", "Driver",
    "RO", "RW", "WO", "ADMIN_RO", "POWER_GROUP", "parse_store", "strip_newline",
    "Node", "Link", "iter_devices",
]
