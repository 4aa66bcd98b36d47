"""The platform bus (drivers/base/platform.c) with driver_override.

Platform devices match a driver by name (the device name without its
``.N`` instance suffix, as ``platform:NAME`` modaliases say) unless
``driver_override`` is set: then only the driver of exactly that name may
bind (drivers/base/driver.c driver_set_override, platform_match).  Devices
created from a device-tree node (``of_node``) also match a driver whose
``of_match_table`` lists one of the node's compatible strings, and their
modalias and uevent are the OF ones.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fakesys.errors import Errno
from fakesys.kernel.base.bus import Bus
from fakesys.kernel.base.core import RO, RW, AttributeGroup, Device
from fakesys.kernel.base.driver import Driver, driver_register
from fakesys.kernel.sizes import PAGE_SIZE

if TYPE_CHECKING:
    from fakesys.kernel.kernel import Kernel


@dataclass
class OfNode:
    """The part of a device-tree node the platform bus looks at."""

    name: str                      # "pmem@100000000"
    compatible: list[str] = field(default_factory=list)
    properties: dict = field(default_factory=dict)
    path: str = ""                 # full name, default "/" + name

    @property
    def full_name(self) -> str:
        return self.path or f"/{self.name}"

    @property
    def short_name(self) -> str:
        """%pOFn: the node name without its unit address."""
        return self.name.split("@", 1)[0]

    def modalias(self) -> str:
        """of_modalias(): the node name, a NULL device type, each compatible."""
        return f"of:N{self.short_name}T(null)" + "".join(
            "C" + c.replace(" ", "_") for c in self.compatible)


class PlatformBus(Bus):
    def __init__(self, kernel: "Kernel") -> None:
        super().__init__(kernel, "platform")

    def match(self, dev: Device, drv: Driver) -> bool:
        if not isinstance(dev, PlatformDevice):
            return False
        if dev.driver_override is not None:
            return dev.driver_override == drv.name
        of_table = getattr(drv, "of_match_table", None)
        if of_table and dev.of_node is not None and set(of_table) & set(dev.of_node.compatible):
            return True
        ids = getattr(drv, "id_names", None)  # the driver's id_table, if it has one
        if ids is not None:
            return dev.id_name in ids
        return dev.id_name == drv.name

    def uevent_env(self, dev: Device) -> list[str]:
        if not isinstance(dev, PlatformDevice):
            return []
        node = dev.of_node
        if node is None:
            return [f"MODALIAS=platform:{dev.id_name}"]
        env = [f"OF_NAME={node.short_name}", f"OF_FULLNAME={node.full_name}"]
        env += [f"OF_COMPATIBLE_{i}={c}" for i, c in enumerate(node.compatible)]
        env += [f"OF_COMPATIBLE_N={len(node.compatible)}", f"MODALIAS={node.modalias()}"]
        return env


class PlatformDevice(Device):
    """A platform device: ``name`` (``name.id`` when it has an instance id).

    ``resources`` are the memory ranges the device owns (pdev->resource),
    in whatever form its drivers expect.
    """

    pm = True

    def __init__(self, kernel: "Kernel", name: str, id: int | None = None,
                 numa_node: int = -1, parent=None, of_node: OfNode | None = None,
                 resources=()) -> None:
        bus = platform_bus(kernel)
        full = name if id is None else f"{name}.{id}"
        super().__init__(kernel, full, parent if parent is not None else kernel.sys_devices.mkdir("platform"),
                         bus=bus)
        self.id_name = name
        self.numa = numa_node
        self.driver_override: str | None = None
        self.of_node = of_node
        self.resources = list(resources)
        self.groups = [PLATFORM_GROUP]

    def numa_node(self) -> int:
        return self.numa

    def modalias(self) -> str:
        return self.of_node.modalias() if self.of_node is not None else f"platform:{self.id_name}"

    def driver_override_store(self, buf) -> None:
        """driver_set_override(): a write of PAGE_SIZE-1 bytes or more is
        EINVAL; the value is cut at the first NUL and the first newline; an
        empty value, or one starting with a newline, clears the override.
        Binds and unbinds nothing."""
        count = buf.count if isinstance(getattr(buf, "count", None), int) else \
            len(str(buf).encode("utf-8", "surrogateescape"))
        if count >= PAGE_SIZE - 1:
            raise Errno(errno.EINVAL, "driver_override too long")
        value = str(buf).split("\n", 1)[0]
        self.driver_override = value or None


PLATFORM_GROUP = AttributeGroup([
    RO("modalias", lambda d: f"{d.modalias()}\n"),
    RO("numa_node", lambda d: f"{d.numa}\n"),
    RW("driver_override", lambda d: f"{d.driver_override or '(null)'}\n",
       PlatformDevice.driver_override_store),
], is_visible=lambda d, a: 0 if a.name == "numa_node" and d.numa < 0 else a.mode)


def platform_bus(kernel: "Kernel") -> PlatformBus:
    bus = kernel.buses.get("platform")
    if bus is None:
        bus = kernel.register_bus(PlatformBus(kernel))
    return bus  # type: ignore[return-value]


def platform_driver_register(kernel: "Kernel", drv_cls: type[Driver]) -> Driver:
    """platform_driver_register() once per boot (module load)."""
    bus = platform_bus(kernel)
    drv = bus.drivers.get(drv_cls.name)
    if drv is None:
        drv = driver_register(drv_cls(kernel, bus))
    return drv
