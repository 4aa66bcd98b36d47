"""kobject_uevent(): the record of events udev would see (lib/kobject_uevent.c).

Kept apart from the device core so that binding (dd.py) and the device
core (core.py) can both announce events without importing each other.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fakesys.kernel.base.core import Device

log = logging.getLogger("fakesys.kernel")

ACTIONS = ("add", "remove", "change", "move", "online", "offline", "bind", "unbind")


def kobject_uevent(dev: "Device", action: str) -> None:
    """Log ``action`` for ``dev`` in the kernel's uevent record."""
    path = dev.kobj.path() if dev.kobj is not None else dev.name
    dev.kernel.uevents.append((action, path, dev.name))
    log.debug("uevent %s %s", action, path)
