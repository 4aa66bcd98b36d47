"""struct device_driver, driver_register() and module_driver() (drivers/base/driver.c).

A driver module declares its driver with :func:`module_driver`, as the
kernel's module_driver() macros do; the bus that loads it never names it.
Which modules are built for a bus is :mod:`fakesys.kernel.config`'s list,
the role Kconfig and the Makefiles play; :func:`built_drivers` loads that
list in order, which is the order drivers are offered devices.
"""

from __future__ import annotations

import errno
import importlib
from typing import TYPE_CHECKING, TypeVar

from fakesys.errors import Errno
from fakesys.kernel import config
from fakesys.kernel.base.dd import device_release_driver, driver_attach, driver_probe_device
from fakesys.kernel.parse import parse_store
from fakesys.sysfs.tree import Dir, File, Link

if TYPE_CHECKING:
    from fakesys.kernel.base.bus import Bus
    from fakesys.kernel.base.core import Device
    from fakesys.kernel.kernel import Kernel


class Driver:
    """A driver: ``probe`` raises Errno to refuse a device.  ``bus_name``
    says which bus's list a :func:`module_driver` declaration joins."""

    name = ""
    bus_name = ""
    module: str | None = ""  # owning module: "" = same name as the driver, None = no owner
    suppress_bind_attrs = False

    def __init__(self, kernel: "Kernel", bus: "Bus") -> None:
        self.kernel = kernel
        self.bus = bus
        self.dir: Dir | None = None

    def probe(self, dev: "Device") -> None:
        pass

    def remove(self, dev: "Device") -> None:
        pass

    def devices(self) -> list["Device"]:
        return [d for d in self.bus.devices.values() if d.driver is self]

    def bind_store(self, data: bytes) -> None:
        dev = self.bus.find(parse_store(data))
        if dev is None or not self.bus.match(dev, self):
            raise Errno(errno.ENODEV, "no such device or driver does not match")
        if dev.driver is not None:
            raise Errno(errno.EBUSY, f"{dev.name} is bound to {dev.driver.name}")
        driver_probe_device(self, dev)

    def unbind_store(self, data: bytes) -> None:
        dev = self.bus.find(parse_store(data))
        if dev is None or dev.driver is not self:
            raise Errno(errno.ENODEV, "device is not bound to this driver")
        device_release_driver(dev)


D = TypeVar("D", bound=Driver)


def driver_register(drv: D) -> D:
    """driver_register()/bus_add_driver(): the driver's directory, its
    ``bind``/``unbind`` files and module link, then every unbound device
    of the bus it matches is probed."""
    kernel, bus = drv.kernel, drv.bus
    d = Dir(drv.name)
    drv.dir = d
    if not drv.suppress_bind_attrs:
        d.add(File("bind", 0o200, None, drv.bind_store))
        d.add(File("unbind", 0o200, None, drv.unbind_store))
    d.add(File("uevent", 0o200, None, lambda data: None))
    if drv.module is not None:  # None: a driver without an owner module
        mod = kernel.module_dir(drv.module or drv.name)
        d.add(Link("module", mod))
        mod.mkdir("drivers").add(Link(f"{bus.name}:{drv.name}", d))
    bus.drivers_dir.add(d)
    bus.drivers[drv.name] = drv
    driver_attach(drv)
    return drv


def driver_unregister(drv: Driver) -> None:
    """driver_unregister(): devices still bound are released, then the
    driver's directory and module link go."""
    kernel, bus = drv.kernel, drv.bus
    for dev in drv.devices():
        device_release_driver(dev)
    bus.drivers.pop(drv.name, None)
    bus.drivers_dir.remove(drv.name)
    mod = kernel.sys_module.get(drv.module or drv.name) if drv.module is not None else None
    if mod is not None and mod.get("drivers") is not None:
        mod.get("drivers").remove(f"{bus.name}:{drv.name}")


_declared: dict[str, list[type[Driver]]] = {}  # module -> the drivers it declares


def module_driver(cls: type[D]) -> type[D]:
    """Declare ``cls`` as a driver of its module, for its bus's list."""
    assert cls.bus_name, f"{cls.__name__} names no bus"
    _declared.setdefault(cls.__module__, []).append(cls)
    return cls


def built_drivers(bus_name: str) -> list[type[Driver]]:
    """The drivers built for ``bus_name``, in link order (config.BUILTIN)."""
    out: list[type[Driver]] = []
    for module in config.BUILTIN[bus_name]:
        importlib.import_module(module)
        out += [cls for cls in _declared.get(module, ()) if cls.bus_name == bus_name]
    return out
