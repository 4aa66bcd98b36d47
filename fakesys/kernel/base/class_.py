"""struct class with its /sys/class/NAME directory (drivers/base/class.c)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fakesys.kernel.base.core import Device
    from fakesys.kernel.kernel import Kernel


class Class:
    """A device class: devices of it are linked from /sys/class/NAME."""

    def __init__(self, kernel: "Kernel", name: str) -> None:
        self.kernel = kernel
        self.name = name
        self.dir = kernel.sys_class.mkdir(name)

    def uevent_env(self, dev: "Device") -> list[str]:
        return []
