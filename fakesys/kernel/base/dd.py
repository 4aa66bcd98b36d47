"""Binding devices to drivers (drivers/base/dd.c).

really_probe() and its callers: a device is offered to the drivers of its
bus in registration order until one probe succeeds; a driver that
registers is offered every unbound device of its bus.  Work a probe asks
to run later (async_schedule) runs when the outermost probe returns.
"""

from __future__ import annotations

import errno
import logging
from typing import TYPE_CHECKING, Callable

from fakesys.errors import Errno
from fakesys.kernel.base.uevent import kobject_uevent
from fakesys.sysfs.tree import Link

if TYPE_CHECKING:
    from fakesys.kernel.base.core import Device
    from fakesys.kernel.base.driver import Driver
    from fakesys.kernel.kernel import Kernel

log = logging.getLogger("fakesys.kernel")


def driver_probe_device(drv: "Driver", dev: "Device") -> None:
    """really_probe(): bind ``dev`` to ``drv``; the probe's errno is the
    caller's (a ``bind`` store returns it)."""
    if not dev.registered:
        raise Errno(errno.ENODEV, f"{dev.name} is not registered")
    if dev.driver is not None:
        raise Errno(errno.EBUSY, f"{dev.name} already bound")
    kernel = dev.kernel
    dev.driver = drv
    kernel.probe_depth += 1
    try:
        dev.bus.probe(dev, drv)
    except Errno:
        dev.driver = None
        raise
    else:
        assert dev.kobj is not None and drv.dir is not None
        drv.dir.add(Link(dev.name, dev.kobj))
        dev.kobj.add(Link("driver", drv.dir))
        kobject_uevent(dev, "bind")
    finally:
        kernel.probe_depth -= 1
        if kernel.probe_depth == 0:
            _run_deferred(kernel)


def _try_probe(drv: "Driver", dev: "Device") -> bool:
    """A probe whose failure is no error of the caller's (it is logged)."""
    try:
        driver_probe_device(drv, dev)
        return True
    except Errno as e:
        log.debug("%s: probe of %s failed: %s", drv.name, dev.name, e)
        return False


def device_attach(dev: "Device") -> bool:
    """__device_attach(): the first matching driver whose probe succeeds wins."""
    assert dev.bus is not None
    for drv in list(dev.bus.drivers.values()):
        if dev.driver is None and dev.bus.match(dev, drv):
            if _try_probe(drv, dev):
                return True
    return False


def driver_attach(drv: "Driver") -> None:
    """driver_attach(): offer every unbound device of the bus that matches."""
    bus = drv.bus
    for dev in list(bus.devices.values()):
        if dev.driver is None and bus.match(dev, drv):
            _try_probe(drv, dev)


def device_release_driver(dev: "Device") -> None:
    """device_release_driver(): the driver's remove, then the links go."""
    drv = dev.driver
    if drv is None:
        return
    assert dev.kobj is not None and drv.dir is not None
    drv.dir.remove(dev.name)
    dev.kobj.remove("driver")
    dev.bus.remove(dev, drv)
    dev.driver = None
    kobject_uevent(dev, "unbind")


def defer(kernel: "Kernel", fn: Callable[[], object]) -> None:
    """async_schedule(): run ``fn`` once the outermost probe has finished."""
    if kernel.probe_depth == 0:
        fn()
    else:
        kernel.deferred.append(fn)


def _run_deferred(kernel: "Kernel") -> None:
    while kernel.deferred:
        fn = kernel.deferred.pop(0)
        try:
            fn()
        except Errno as e:
            log.debug("deferred work failed: %s", e)
