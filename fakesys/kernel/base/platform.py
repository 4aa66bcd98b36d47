"""The platform bus (drivers/base/platform.c) with driver_override.

Platform devices match a driver by name (the device name without its
``.N`` instance suffix, as ``platform:NAME`` modaliases say) unless
``driver_override`` is set: then only the driver of exactly that name may
bind (drivers/base/driver.c driver_set_override, platform_match).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from fakesys.errors import Errno
from fakesys.kernel.base.core import RO, RW, Attribute, AttributeGroup, Bus, Device, Driver

if TYPE_CHECKING:
    from fakesys.kernel.kernel import Kernel

PAGE_SIZE = 4096


class PlatformBus(Bus):
    def __init__(self, kernel: "Kernel") -> None:
        super().__init__(kernel, "platform")

    def match(self, dev: Device, drv: Driver) -> bool:
        if not isinstance(dev, PlatformDevice):
            return False
        if dev.driver_override is not None:
            return dev.driver_override == drv.name
        ids = getattr(drv, "id_names", None)  # the driver's id_table, if it has one
        if ids is not None:
            return dev.id_name in ids
        return dev.id_name == drv.name

    def uevent_env(self, dev: Device) -> list[str]:
        return [f"MODALIAS=platform:{dev.id_name}"] if isinstance(dev, PlatformDevice) else []


class PlatformDevice(Device):
    """A platform device: ``name`` (``name.id`` when it has an instance id)."""

    pm = True

    def __init__(self, kernel: "Kernel", name: str, id: int | None = None,
                 numa_node: int = -1, parent=None) -> None:
        bus = platform_bus(kernel)
        full = name if id is None else f"{name}.{id}"
        super().__init__(kernel, full, parent if parent is not None else kernel.sys_devices.mkdir("platform"),
                         bus=bus)
        self.id_name = name
        self.numa = numa_node
        self.driver_override: str | None = None
        self.groups = [PLATFORM_GROUP]

    def numa_node(self) -> int:
        return self.numa

    def driver_override_store(self, buf: str) -> None:
        """driver_set_override(): PAGE_SIZE-1 bytes at most, cut at the first
        newline; an empty value clears the override.  Binds nothing."""
        if len(buf.encode()) >= PAGE_SIZE - 1:
            raise Errno(errno.EINVAL, "driver_override too long")
        value = buf.split("\n", 1)[0]
        self.driver_override = value or None


PLATFORM_GROUP = AttributeGroup([
    RO("modalias", lambda d: f"platform:{d.id_name}\n"),
    RO("numa_node", lambda d: f"{d.numa}\n"),
    RW("driver_override", lambda d: f"{d.driver_override or '(null)'}\n",
       PlatformDevice.driver_override_store),
], is_visible=lambda d, a: 0 if a.name == "numa_node" and d.numa < 0 else a.mode)


def platform_bus(kernel: "Kernel") -> PlatformBus:
    bus = kernel.buses.get("platform")
    if bus is None:
        bus = kernel.register_bus(PlatformBus(kernel))
    return bus  # type: ignore[return-value]
