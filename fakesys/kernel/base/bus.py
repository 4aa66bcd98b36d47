"""struct bus_type and its /sys/bus/NAME directory (drivers/base/bus.c).

A bus matches devices with drivers; the driver core calls its ``probe``
and ``remove`` wrappers around the driver's own.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from fakesys.errors import Errno
from fakesys.kernel.base.dd import device_attach
from fakesys.kernel.parse import parse_store, strip_newline
from fakesys.sysfs.tree import File

if TYPE_CHECKING:
    from fakesys.kernel.base.core import Device
    from fakesys.kernel.base.driver import Driver
    from fakesys.kernel.kernel import Kernel


class Bus:
    """A bus type: ``devices/``, ``drivers/`` and the probe controls."""

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

    def match(self, dev: "Device", drv: "Driver") -> bool:
        return False

    def uevent_env(self, dev: "Device") -> list[str]:
        return []

    def probe(self, dev: "Device", drv: "Driver") -> None:
        """The bus's probe wrapper (e.g. nvdimm_bus_probe); default: the driver's."""
        drv.probe(dev)

    def remove(self, dev: "Device", drv: "Driver") -> None:
        drv.remove(dev)

    def find(self, buf: str) -> "Device | None":
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
            device_attach(dev)


def bus_probe_device(dev: "Device") -> None:
    """bus_probe_device(): a new device is offered to the drivers when the
    bus probes automatically."""
    if dev.bus is not None and dev.bus.autoprobe:
        device_attach(dev)
