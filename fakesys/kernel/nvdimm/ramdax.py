"""RAMDAX (drivers/nvdimm/ramdax.c, Linux 6.19): namespaces with labels on
RAM carve-outs.

The ``ramdax`` platform driver has neither an id table nor an OF match
table, so it binds nothing until an administrator points a device's
``driver_override`` at it: the ``e820_pmem`` device (then it takes every
legacy pmem range) or a device-tree ``pmem-region`` device (then it takes
the device's ``reg`` ranges; any other node is refused with ENODEV).

Per range it creates one DIMM and one region.  The last 128 KiB of the
range is the DIMM's label area, read and written by the driver's own
command handler (GET_CONFIG_SIZE answers 128 KiB with a max_xfer of 8
bytes); the DIMM is created labeling (NDD_LABELING), so its region is
label-backed from the start even while the area is blank, and the first
namespace size write formats it ("autolabel": 256-byte v1.2 labels, 510
slots).  The region covers the whole range but its one mapping stops
short of the label area; its interleave set cookies are all
0xcafebeefcafebeef.  Unbinding unregisters the bus.
"""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING

from fakesys.errors import Errno
from fakesys.kernel.base.core import Device, device_add
from fakesys.kernel.base.dd import device_attach
from fakesys.kernel.base.driver import Driver
from fakesys.kernel.base.platform import PlatformDevice, platform_driver_register
from fakesys.kernel.e820 import PmemRange, legacy_ranges
from fakesys.kernel.nvdimm.bus import BusProviderDriver, libnvdimm
from fakesys.kernel.nvdimm.dimm import Nvdimm
from fakesys.kernel.nvdimm.region import InterleaveSet, Mapping, RegionDesc, region_create
from fakesys.kernel.uapi.ndctl import (
    ND_CMD_GET_CONFIG_DATA, ND_CMD_GET_CONFIG_SIZE, ND_CMD_SET_CONFIG_DATA,
)
from fakesys.media import Slice

if TYPE_CHECKING:
    from fakesys.kernel.kernel import Kernel
    from fakesys.kernel.nvdimm.bus import NvdimmBus

LABEL_AREA_SIZE = 128 << 10
MAX_XFER = 8
COOKIE = 0xCAFEBEEFCAFEBEEF
CMD_MASK = (1 << ND_CMD_GET_CONFIG_SIZE) | (1 << ND_CMD_GET_CONFIG_DATA) | (1 << ND_CMD_SET_CONFIG_DATA)
OF_MATCHES = ("pmem-region",)   # consulted by probe only, never registered for matching
_U32 = 0xFFFFFFFF


class RamdaxDriver(BusProviderDriver):
    """``ramdax``: matched only through driver_override."""

    name = "ramdax"
    module = "ramdax"

    def probe(self, dev: Device) -> None:
        assert isinstance(dev, PlatformDevice)
        nd = libnvdimm(self.kernel)
        bus = nd.bus_register(dev, "ramdax", ndctl_handler=RamdaxCtl())
        try:
            if dev.of_node is not None:
                if not set(OF_MATCHES) & set(dev.of_node.compatible):
                    raise Errno(errno.ENODEV, f"{dev.name} is not a pmem-region")
                ranges = list(dev.resources)
            else:
                ranges = legacy_ranges(self.kernel)
            for rng in ranges:
                register_dimm(bus, rng)
        except Errno:
            nd.bus_unregister(bus)
            raise
        dev.driver_data = bus


def register_dimm(bus: "NvdimmBus", rng: PmemRange) -> None:
    """ramdax_register_dimm() and ramdax_register_region() for one range."""
    if rng.size <= LABEL_AREA_SIZE:
        raise Errno(errno.ENXIO, f"range {rng.start:#x} is too small for a label area")
    kernel, nd = bus.kernel, bus.nd
    data = rng.size - LABEL_AREA_SIZE
    dimm = Nvdimm(kernel, bus, nd.ida_get(nd.dimm_ids), cmd_mask=CMD_MASK,
                  lsa=Slice(rng.store, data, LABEL_AREA_SIZE), media=Slice(rng.store, 0, data),
                  max_xfer=MAX_XFER, labeling=True)
    device_add(dimm)
    region_create(bus, RegionDesc(start=rng.start, size=rng.size, mappings=[Mapping(dimm, 0, data, 0)],
                                  nd_set=InterleaveSet(COOKIE, COOKIE, COOKIE),
                                  numa_node=rng.numa_node, target_node=rng.target_node))


class RamdaxCtl:
    """ramdax_ctl(): the bus descriptor's command handler.

    Only DIMM commands, only those in the DIMM's mask; the label area is
    plain memory, so a request inside it always succeeds (the firmware
    status word is left as the caller wrote it) and one reaching past it
    is EINVAL, as is a buffer too short for the header and its payload.
    The offset check is done without 32-bit wrap-around (the newer of the
    two upstream versions uses size_add()).
    """

    @staticmethod
    def dimm_family_mask(bus) -> int:
        return 0

    @staticmethod
    def bus_family_mask(bus) -> int:
        return 0

    def ctl(self, bus, nvdimm, nr: int, buf: bytearray) -> int:
        if nvdimm is None:
            raise Errno(errno.ENOTTY, "no bus commands")
        if not nvdimm.cmd_mask >> nr & 1:
            raise Errno(errno.ENOTTY, f"command {nr} not supported")
        if nr == ND_CMD_GET_CONFIG_SIZE:
            if len(buf) < 12:
                raise Errno(errno.EINVAL, "short get_config_size buffer")
            struct.pack_into("<III", buf, 0, 0, LABEL_AREA_SIZE, MAX_XFER)
            return 0
        if nr == ND_CMD_GET_CONFIG_DATA:
            if len(buf) < 12:
                raise Errno(errno.EINVAL, "short get_config_data header")
            offset, length = struct.unpack_from("<II", buf, 0)
            if 12 + length > len(buf) or offset + length > LABEL_AREA_SIZE:
                raise Errno(errno.EINVAL, f"get_config_data({offset:#x}, {length:#x}) out of range")
            buf[12:12 + length] = nvdimm.lsa.read(offset, length)
            return 0
        if nr == ND_CMD_SET_CONFIG_DATA:
            if len(buf) < 8:
                raise Errno(errno.EINVAL, "short set_config_data header")
            offset, length = struct.unpack_from("<II", buf, 0)
            if 8 + length > len(buf) or offset + length > LABEL_AREA_SIZE:
                raise Errno(errno.EINVAL, f"set_config_data({offset:#x}, {length:#x}) out of range")
            nvdimm.lsa.write(offset, bytes(buf[8:8 + length]))
            return 0
        raise Errno(errno.ENOTTY, f"command {nr} not supported")


def register_pmem_drivers(kernel: "Kernel", dev: PlatformDevice, drv_cls: type[Driver]) -> None:
    """A platform pmem provider's driver, and ramdax beside it on kernels
    that have it (it binds only through driver_override); then bind ``dev``
    as the driver core does, unless registering a driver already did."""
    platform_driver_register(kernel, drv_cls)
    if kernel.version.has_ramdax:
        platform_driver_register(kernel, RamdaxDriver)
    if dev.driver is None:
        device_attach(dev)
