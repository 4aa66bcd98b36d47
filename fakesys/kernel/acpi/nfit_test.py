"""nfit_test (tools/testing/nvdimm/test/nfit.c): the unit-test NFIT provider.

The module registers platform devices ``nfit_test.0`` and ``nfit_test.1``;
each is an NFIT bus whose provider name is the device's name, parsed by
the real NFIT code, with the module's own ``ndctl`` callback instead of
ACPI _DSM methods (:class:`NfitTestCtl`, after ``nfit_test_ctl``).  The
NFITs are the platform's to describe (the module's own tables in the
real one); ``modprobe nfit_test`` inside ``fakesys run`` brings them up
in a running fake (:func:`nfit_test_init`) and ``modprobe -r nfit_test``
takes them down (:func:`nfit_test_exit`), refused while a region is
enabled (the bus provider module is pinned by enabled regions,
nvdimm_bus_probe/to_bus_provider), as ``Module nfit_test is in use``.

Differences from nfit_test kept on purpose: no BLK/DCR SPA ranges (6.1
creates no regions for them), no command-failure injection
(``/sys/class/nfit_test_dimm``), no firmware update or security
emulation beyond what ``ndctl list`` reads.
"""

from __future__ import annotations

import errno
import struct
from typing import Callable

from fakesys.errors import Errno
from fakesys.kernel.acpi import nfit_fw as fw
from fakesys.kernel.acpi.nfit import nfit_module_init, nfit_register
from fakesys.kernel.acpi.nfit_table import Nfit
from fakesys.kernel.base.class_ import Class
from fakesys.kernel.base.core import RO, RW, WO, AttributeGroup, Device, device_add, device_del
from fakesys.kernel.base.driver import Driver, driver_register, driver_unregister
from fakesys.kernel.base.module import module_load
from fakesys.kernel.base.platform import PlatformDevice, platform_bus
from fakesys.kernel.parse import kstrtoint
from fakesys.kernel.uapi.ndctl import (
    ND_CMD_ARS_CAP, ND_CMD_ARS_START, ND_CMD_ARS_STATUS, ND_CMD_CALL, ND_CMD_CLEAR_ERROR,
    ND_CMD_GET_CONFIG_DATA, ND_CMD_GET_CONFIG_SIZE, ND_CMD_PKG_SIZE, ND_CMD_SET_CONFIG_DATA,
    NVDIMM_BUS_FAMILY_NFIT, NVDIMM_FAMILY_INTEL,
)

MODULE = "nfit_test"
#: modules nfit_test pulls in (and that show as loaded with it)
DEPENDS = ("nfit_test_iomap", "nfit", "libnvdimm", "nd_pmem", "nd_btt", "dax_pmem", "device_dax")


class NfitTestCtl:
    """nfit_test_ctl() and the NFIT hooks nfit_test keeps (clear_to_send, family masks)."""

    @staticmethod
    def dimm_family_mask(bus) -> int:
        return 1 << NVDIMM_FAMILY_INTEL

    @staticmethod
    def bus_family_mask(bus) -> int:
        return 1 << NVDIMM_BUS_FAMILY_NFIT

    @staticmethod
    def clear_to_send(bus, nvdimm, cmd: int, buf) -> None:
        fw.acpi_nfit_clear_to_send(bus, nvdimm, cmd, buf)

    def ctl(self, bus, nvdimm, nr: int, buf: bytearray) -> int:
        if nvdimm is not None:
            return self._dimm(bus, nvdimm, nr, buf)
        return self._bus(bus, nr, buf)

    # -- the DIMMs ------------------------------------------------------------------

    def _dimm(self, bus, nvdimm, nr: int, buf: bytearray) -> int:
        spec = getattr(nvdimm, "spec", None)
        if spec is None:
            raise Errno(errno.ENOTTY, "no NFIT data for this DIMM")
        if nr == ND_CMD_CALL:
            family, func, size_in, size_out = struct.unpack_from("<QQII", buf, 0)
            if family != spec.family:
                raise Errno(errno.ENOTTY, f"family {family} is not {spec.family}")
            smart = getattr(nvdimm, "smart", None)
            handlers = {}
            if smart is not None:
                handlers = {fw.ND_INTEL_SMART: smart.smart, fw.ND_INTEL_SMART_THRESHOLD: smart.threshold,
                            fw.ND_INTEL_SMART_SET_THRESHOLD: smart.set_threshold,
                            fw.ND_INTEL_SMART_INJECT: smart.inject,
                            fw.ND_INTEL_ENABLE_LSS_STATUS: smart.lss,
                            fw.ND_INTEL_FW_GET_INFO: fw.fw_get_info}
            handler = handlers.get(func)
            if handler is None:
                raise Errno(errno.ENOTTY, f"Intel function {func} not emulated")
            return _run_payload(handler, buf, size_in + size_out)
        if not nvdimm.cmd_mask >> nr & 1 or not int(spec.dsm_mask) >> nr & 1:
            raise Errno(errno.ENOTTY, f"command {nr} not supported")
        if nvdimm.lsa is None:
            raise Errno(errno.ENOTTY, "no label area")
        size = nvdimm.lsa.size
        if nr == ND_CMD_GET_CONFIG_SIZE:
            if len(buf) < 12:
                raise Errno(errno.EINVAL, "short buffer")
            struct.pack_into("<III", buf, 0, 0, size, nvdimm.max_xfer)
            return 0
        if nr == ND_CMD_GET_CONFIG_DATA:
            if len(buf) < 12:
                raise Errno(errno.EINVAL, "short buffer")
            offset, length = struct.unpack_from("<II", buf, 0)
            if offset >= size or length + 12 > len(buf):
                raise Errno(errno.EINVAL, f"label read at {offset:#x}+{length:#x}")
            n = min(length, size - offset)
            struct.pack_into("<I", buf, 8, 0)
            buf[12:12 + n] = nvdimm.lsa.read(offset, n)
            return len(buf) - 12 - n
        if nr == ND_CMD_SET_CONFIG_DATA:
            if len(buf) < 8:
                raise Errno(errno.EINVAL, "short buffer")
            offset, length = struct.unpack_from("<II", buf, 0)
            if offset >= size or length + 8 + 4 > len(buf):
                raise Errno(errno.EINVAL, f"label write at {offset:#x}+{length:#x}")
            n = min(length, size - offset)
            struct.pack_into("<I", buf, 8 + length, 0)
            nvdimm.lsa.write(offset, bytes(buf[8:8 + n]))
            return len(buf) - 8 - (n + 4)
        raise Errno(errno.ENOTTY, f"command {nr} not emulated")

    # -- the bus ---------------------------------------------------------------------

    def _bus(self, bus, nr: int, buf: bytearray) -> int:
        state = bus.provider_data
        firmware = getattr(state, "fw", None)
        if firmware is None:
            raise Errno(errno.ENOTTY, "no ARS on this bus")
        if nr == ND_CMD_CALL:
            func = struct.unpack_from("<Q", buf, 8)[0]
            size_in, size_out = struct.unpack_from("<II", buf, 16)
            handlers = {fw.NFIT_CMD_TRANSLATE_SPA: lambda p: firmware.translate_spa(bus, p),
                        fw.NFIT_CMD_ARS_INJECT_SET: lambda p: firmware.inject_set(p, lambda: fw.uc_error_notify(bus)),
                        fw.NFIT_CMD_ARS_INJECT_CLEAR: firmware.inject_clear,
                        fw.NFIT_CMD_ARS_INJECT_GET: firmware.inject_get}
            handler = handlers.get(func)
            if handler is None:
                raise Errno(errno.ENOTTY, f"bus function {func} not emulated")
            return _run_payload(handler, buf, size_in + size_out)
        if not bus.cmd_mask >> nr & 1:
            raise Errno(errno.ENOTTY, f"command {nr} not supported")
        handlers = {ND_CMD_ARS_CAP: firmware.ars_cap, ND_CMD_ARS_START: firmware.ars_start,
                    ND_CMD_ARS_STATUS: firmware.ars_status, ND_CMD_CLEAR_ERROR: firmware.clear_error}
        handler = handlers.get(nr)
        if handler is None:
            raise Errno(errno.ENOTTY, f"command {nr} not emulated")
        rc, _cmd_rc = handler(buf)
        if rc < 0:
            raise Errno(-rc, f"bus command {nr}")
        return rc


def _run_payload(handler, buf: bytearray, length: int) -> int:
    """Run a firmware function on the payload of an nd_cmd_pkg (buf_len = in + out)."""
    length = max(0, min(length, len(buf) - ND_CMD_PKG_SIZE))
    payload = bytearray(buf[ND_CMD_PKG_SIZE:ND_CMD_PKG_SIZE + length])
    rc, _cmd_rc = handler(payload)
    buf[ND_CMD_PKG_SIZE:ND_CMD_PKG_SIZE + length] = payload
    if rc < 0:
        raise Errno(-rc, "firmware function failed")
    return rc


# ---------------------------------------------------------------------------
# the module


class NfitTestDriver(Driver):
    """Platform driver ``nfit_test``: each device is one NFIT.

    ``nfits`` maps a device name to a function that makes its NFIT: the
    module allocates the DIMMs' memory (zeroed) at every probe, so each
    probe gets new stores."""

    name = MODULE
    module = MODULE

    def __init__(self, kernel, bus, nfits: dict[str, Callable[[], Nfit]]) -> None:
        super().__init__(kernel, bus)
        self.nfits = nfits
        self.pdevs: list[PlatformDevice] = []  # the platform devices the module made

    def probe(self, dev) -> None:
        make = self.nfits.get(dev.name)
        if make is None:
            raise Errno(errno.ENODEV, f"no NFIT for {dev.name}")
        dev.driver_data = nfit_register(self.kernel, make(), parent=dev, ndctl=NfitTestCtl())
        _test_dimms(self.kernel, dev)

    def remove(self, dev) -> None:
        bus = dev.driver_data
        if bus is not None:
            state = bus.provider_data
            if state is not None and getattr(state, "scrubber", None) is not None:
                state.scrubber.shutdown()
            self.kernel.nd.bus_unregister(bus)
            dev.driver_data = None


# nfit_test's handle[] table: test_dimmN of nfit_test.0 (0-4, 4 being the
# hotplug DIMM) and of nfit_test.1 (5, 6)
HANDLES = {0: (0, [0x0, 0x1, 0x100, 0x101, 0x1000]), 1: (5, [0x10000, 0x10001])}


def _test_dimms(kernel, pdev) -> None:
    """The nfit_test_dimm class devices (command-failure injection knobs)."""
    got = HANDLES.get(int(pdev.name.rpartition(".")[2]))
    if got is None:
        return
    cls = kernel.classes.get("nfit_test_dimm") or kernel.register_class(Class(kernel, "nfit_test_dimm"))
    first, handles = got
    for i, handle in enumerate(handles):
        dev = Device(kernel, f"test_dimm{first + i}", pdev, cls=cls)
        dev.pm = True
        knobs = {"fail_cmd": 0, "fail_cmd_code": 0}

        def store(key, base):
            def fn(d, buf: str) -> None:
                knobs[key] = kstrtoint(buf, base)
            return fn
        dev.groups = [AttributeGroup([
            RO("handle", lambda d, h=handle: f"{h:#x}\n"),
            RW("fail_cmd", lambda d, k=knobs: f"{k['fail_cmd']:#x}\n", store("fail_cmd", 0)),
            RW("fail_cmd_code", lambda d, k=knobs: f"{k['fail_cmd_code']}\n", store("fail_cmd_code", 0)),
            WO("lock_dimm", lambda d, b: None),
        ])]
        device_add(dev, probe=False)


def is_loaded(kernel) -> bool:
    return MODULE in platform_bus(kernel).drivers


def nfit_test_init(kernel, nfits: dict[str, Callable[[], Nfit]]) -> None:
    """``modprobe nfit_test``: the modules it pulls in, the driver and its
    platform devices, one per NFIT (named ``nfit_test.N``)."""
    if is_loaded(kernel):
        return
    for name in (MODULE,) + DEPENDS:
        module_load(kernel, name)
    nfit_module_init(kernel)
    bus = platform_bus(kernel)
    drv = NfitTestDriver(kernel, bus, nfits)
    for name in nfits:
        base, _, idx = name.rpartition(".")
        dev = PlatformDevice(kernel, base, int(idx))
        device_add(dev, probe=False)
        drv.pdevs.append(dev)
    driver_register(drv)


def nfit_test_exit(kernel) -> None:
    """``modprobe -r nfit_test``: EBUSY while a region of its buses is enabled."""
    drv = platform_bus(kernel).drivers.get(MODULE)
    if drv is None:
        return
    for dev in drv.pdevs:
        bus = dev.driver_data
        if bus is not None and any(r.driver is not None for r in bus.regions()):
            raise Errno(errno.EBUSY, "Module nfit_test is in use")
    for dev in drv.pdevs:
        device_del(dev)
    driver_unregister(drv)
    kernel.sys_module.remove(MODULE)
    if kernel.classes.pop("nfit_test_dimm", None) is not None:
        kernel.sys_class.remove("nfit_test_dimm")
    kernel.modules.pop(MODULE, None)
