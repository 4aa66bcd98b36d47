"""``device_dax`` (drivers/dax/device.c): a dax device as a char device.

Probe claims each range of the device (request_mem_region, named after
the device: ``daxR.N`` in /proc/iomem) and makes the char device live; a
range someone else holds (memory kmem could not give back) is EBUSY.  Remove undoes both.  While
a device is not live, /dev/daxR.N has no driver behind it: the data path
refuses to open it (ENXIO, as chrdev_open does without a cdev).

Before 6.3 this driver matches every dax device (match_always); from 6.3
it matches the devices of non-KMEM regions (see DaxBus.match).
"""

from __future__ import annotations

import errno

from fakesys.errors import Errno
from fakesys.kernel.base.core import Device
from fakesys.kernel.base.driver import module_driver
from fakesys.kernel.dax.bus import DaxDriver, DevDax


@module_driver
class DeviceDaxDriver(DaxDriver):
    name = "device_dax"
    match_always = True

    def probe(self, dev: Device) -> None:
        assert isinstance(dev, DevDax)
        dax = self.kernel.dax
        wrapped = dev.region.iomem_wrapped
        claimed = []
        for rng in dev.ranges:
            res = dax.request_mem_region(rng.start, rng.size, dev.name, wrapped=wrapped)
            if res is None:
                for got in claimed:
                    self._release(got, wrapped)
                raise Errno(errno.EBUSY, f"{dev.name}: {rng.start:#x}-{rng.end:#x} could not reserve range")
            claimed.append(res)
        dev.claimed = claimed
        dev.live = True

    def _release(self, res, wrapped: bool) -> None:
        if not wrapped:
            self.kernel.iomem.release(res)

    def remove(self, dev: Device) -> None:
        assert isinstance(dev, DevDax)
        dev.live = False
        for res in getattr(dev, "claimed", ()):
            self._release(res, dev.region.iomem_wrapped)
        dev.claimed = []
