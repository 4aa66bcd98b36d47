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

The DIMMs of ``nfit_test.0`` take a firmware update (start, send, finish,
then a query that says "busy" for a second while the image "verifies")
and can be armed for activation; the bus activates what is armed
(:class:`NfitTestFw`, after nfit_test's ``nfit_test_fw``).  Its budget
is 3 s of quiesce time at 1 s per armed DIMM, so a fourth armed DIMM
overflows it, and for 3 s after an activation the platform reports busy.

Differences from nfit_test kept on purpose: no BLK/DCR SPA ranges (6.1
creates no regions for them), no command-failure injection
(``/sys/class/nfit_test_dimm``), no security emulation beyond what
``ndctl list`` reads.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from typing import Callable

from fakesys.errors import Errno
from fakesys.kernel.acpi import intel
from fakesys.kernel.acpi import nfit_fw as fw
from fakesys.kernel.acpi.nfit import nfit_module_init, nfit_register
from fakesys.kernel.acpi.nfit_table import Nfit
from fakesys.kernel.base.class_ import Class
from fakesys.kernel.base.core import RO, RW, WO, AttributeGroup, Device, device_add, device_del
from fakesys.kernel.base.driver import Driver, driver_register, driver_unregister
from fakesys.kernel.base.module import module_load
from fakesys.kernel.base.platform import PlatformDevice, platform_bus
from fakesys.kernel.base.timer import timers
from fakesys.kernel.parse import kstrtoint
from fakesys.kernel.uapi.ndctl import (
    ND_CMD_ARS_CAP, ND_CMD_ARS_START, ND_CMD_ARS_STATUS, ND_CMD_CALL, ND_CMD_CLEAR_ERROR,
    ND_CMD_GET_CONFIG_DATA, ND_CMD_GET_CONFIG_SIZE, ND_CMD_PKG_SIZE, ND_CMD_SET_CONFIG_DATA,
    NVDIMM_BUS_FAMILY_NFIT, NVDIMM_FAMILY_INTEL,
)

MODULE = "nfit_test"
#: modules nfit_test pulls in (and that show as loaded with it)
DEPENDS = ("nfit_test_iomap", "nfit", "libnvdimm", "nd_pmem", "nd_btt", "dax_pmem", "device_dax")


# nfit_test's firmware-update platform (nfit_test.h)
INTEL_FW_STORAGE_SIZE = 0x100000
INTEL_FW_MAX_SEND_LEN = 0xFEC
INTEL_FW_QUERY_INTERVAL = 250000
INTEL_FW_QUERY_MAX_TIME = 3000000
INTEL_FW_FIS_VERSION = 0x0105
INTEL_FW_FAKE_VERSION = 0xFFFFFFFFABCD
FW_STATE_NEW, FW_STATE_IN_PROGRESS, FW_STATE_VERIFY, FW_STATE_UPDATED = range(4)
FW_VERIFY_SECONDS = 1.0         # finish -> the query stops saying "busy"
FWA_SECONDS = 3.0               # busy after an activation; and the quiesce budget
FWA_SECONDS_PER_DIMM = 1.0      # the quiesce time each armed DIMM costs
USEC_PER_SEC = 1_000_000
NUM_DCR = 5                     # handle[] entries with per-DIMM command state (nfit_test.0)
# Intel firmware statuses: extended status 7 with a reason in the high word
FW_STATUS_SEQUENCE = 0x10007    # another update in progress / wrong context
FW_STATUS_BUSY = 0x20007        # verifying, or updated and waiting for activation
FW_STATUS_ABORTED = 0x40007     # aborted / sequencing error
FW_STATUS_INVALID_STATE = 0x5
FW_STATUS_BOUNDS = 0x3


def _status(p: bytearray, off: int, value: int) -> None:
    """Store a status word where the payload has room for it."""
    if off + 4 <= len(p):
        struct.pack_into("<I", p, off, value)


@dataclass
class NfitTestFw:
    """One DIMM's firmware-update and activation state (nfit_test_fw).

    Each command takes its payload in place and returns ``(rc, cmd_rc)``
    as the other platform functions do (nfit_fw.py); ``now`` is the
    kernel's clock (jiffies)."""

    state: int = FW_STATE_NEW
    context: int = 0
    version: int = 0
    size_received: int = 0
    end_time: float = 0.0
    armed: bool = False
    missed_activate: bool = False
    last_activate: float | None = None

    def get_info(self, p: bytearray) -> tuple[int, int]:
        """nd_intel_fw_info: the running version is always 0, the staged
        one what the last completed update left."""
        if len(p) < 44:
            return -errno.EINVAL, 0
        struct.pack_into("<IIIIIB3xIQQ", p, 0, 0, INTEL_FW_STORAGE_SIZE, INTEL_FW_MAX_SEND_LEN,
                         INTEL_FW_QUERY_INTERVAL, INTEL_FW_QUERY_MAX_TIME, 0,
                         INTEL_FW_FIS_VERSION, 0, self.version)
        return 0, 0

    def start(self, p: bytearray) -> tuple[int, int]:
        """nd_intel_fw_start: a new context, unless an update is under way."""
        if len(p) < 8:
            return -errno.EINVAL, 0
        if self.state != FW_STATE_NEW:
            _status(p, 0, FW_STATUS_SEQUENCE)
            return 0, 0
        self.state = FW_STATE_IN_PROGRESS
        self.context = (self.context + 1) & 0xFFFFFFFF
        self.size_received = 0
        struct.pack_into("<II", p, 0, 0, self.context)
        return 0, 0

    def send(self, p: bytearray) -> tuple[int, int]:
        """nd_intel_fw_send_data: the status word follows the data."""
        if len(p) < 12:
            return -errno.EINVAL, 0
        context, offset, length = struct.unpack_from("<III", p, 0)
        at = 12 + length
        if self.state != FW_STATE_IN_PROGRESS:
            _status(p, at, FW_STATUS_INVALID_STATE)
        elif context != self.context:
            _status(p, at, FW_STATUS_SEQUENCE)
        elif offset + length > INTEL_FW_STORAGE_SIZE or length > INTEL_FW_MAX_SEND_LEN:
            _status(p, at, FW_STATUS_BOUNDS)
        else:
            self.size_received += length
            _status(p, at, 0)
        return 0, 0

    def finish(self, p: bytearray, now: float) -> tuple[int, int]:
        """nd_intel_fw_finish_update: finish (verify for a second) or abort."""
        # the platform reads a whole struct whatever the length (zeros past it)
        ctrl_flags, context = struct.unpack_from("<B3xI", bytes(p[:8]).ljust(8, b"\0"), 0)
        if self.state == FW_STATE_UPDATED:
            _status(p, 8, FW_STATUS_BUSY)
        elif ctrl_flags == 0:
            if context != self.context:
                _status(p, 8, FW_STATUS_SEQUENCE)
                return 0, 0
            _status(p, 8, 0)
            self.state = FW_STATE_VERIFY
            self.end_time = now + FW_VERIFY_SECONDS
        elif ctrl_flags == 1:
            self.size_received = 0
            _status(p, 8, FW_STATUS_ABORTED)
            self.state = FW_STATE_NEW
        else:
            return -errno.EINVAL, 0
        return 0, 0

    def query(self, p: bytearray, now: float) -> tuple[int, int]:
        """nd_intel_fw_finish_query: busy while verifying, then the new version."""
        if len(p) < 16:
            return -errno.EINVAL, 0
        context = struct.unpack_from("<I", p, 0)[0]
        if context != self.context:
            _status(p, 4, FW_STATUS_SEQUENCE)
            return 0, 0
        status, rev = 0, 0
        if self.state == FW_STATE_IN_PROGRESS:
            status = FW_STATUS_ABORTED
        elif self.state == FW_STATE_VERIFY and now < self.end_time:
            status = FW_STATUS_BUSY
        elif self.state in (FW_STATE_VERIFY, FW_STATE_UPDATED):
            if self.state == FW_STATE_VERIFY:
                self.state = FW_STATE_UPDATED
                self.missed_activate = False
            self.version = rev = INTEL_FW_FAKE_VERSION
        struct.pack_into("<IQ", p, 4, status, rev)
        return 0, 0

    def arm(self, p: bytearray) -> tuple[int, int]:
        """nd_intel_fw_activate_arm: any value but 1 disarms."""
        if len(p) < 1:
            return -errno.EINVAL, 0
        self.armed = p[0] == intel.ND_INTEL_DIMM_FWA_ARM
        _status(p, 1, 0)
        return 0, 0


class NfitTestCtl:
    """nfit_test_ctl() and the NFIT hooks nfit_test keeps (clear_to_send, family masks).

    ``module`` holds what the module keeps across its instances (the time
    of the last activation); ``handles`` are the DIMM handles of this
    instance with their index in nfit_test's handle table, and ``fw`` the
    firmware state of those with commands (index below NUM_DCR)."""

    def __init__(self, module=None, handles: tuple[int, list[int]] = (0, [])) -> None:
        self.module = module if module is not None else NfitTestModule()
        first, table = handles
        self.index = {h: first + i for i, h in enumerate(table)}
        self.fw = {i: NfitTestFw() for i in self.index.values() if i < NUM_DCR}

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
        spec = nvdimm.spec
        if spec is None:
            raise Errno(errno.ENOTTY, "no NFIT data for this DIMM")
        if nr == ND_CMD_CALL:
            family, func, size_in, size_out = struct.unpack_from("<QQII", buf, 0)
            if family != spec.family:
                raise Errno(errno.ENOTTY, f"family {family} is not {spec.family}")
            if func in self.FW_FUNCS:
                return self._dimm_fw(bus, spec.handle, func, buf, size_in + size_out)
            smart = nvdimm.smart
            handlers = {}
            if smart is not None:
                handlers = {fw.ND_INTEL_SMART: smart.smart, fw.ND_INTEL_SMART_THRESHOLD: smart.threshold,
                            fw.ND_INTEL_SMART_SET_THRESHOLD: smart.set_threshold,
                            fw.ND_INTEL_SMART_INJECT: smart.inject,
                            fw.ND_INTEL_ENABLE_LSS_STATUS: smart.lss}
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

    FW_FUNCS = (intel.ND_INTEL_FW_GET_INFO, intel.ND_INTEL_FW_START_UPDATE,
                intel.ND_INTEL_FW_SEND_DATA, intel.ND_INTEL_FW_FINISH_UPDATE,
                intel.ND_INTEL_FW_FINISH_QUERY, intel.NVDIMM_INTEL_FW_ACTIVATE_DIMMINFO,
                intel.NVDIMM_INTEL_FW_ACTIVATE_ARM)

    def _dimm_fw(self, bus, handle: int, func: int, buf: bytearray, length: int) -> int:
        """The firmware update and activate functions of one DIMM (get_dimm():
        only nfit_test.0's DIMMs have them)."""
        i = self.index.get(handle)
        if i is None:
            raise Errno(errno.ENXIO, f"no nfit_test DIMM with handle {handle:#x}")
        if i >= NUM_DCR:
            raise Errno(errno.EINVAL, "ND_CMD_CALL only valid for nfit_test.0")
        fwst = self.fw[i]
        now = timers(bus.kernel).now()
        handler = {intel.ND_INTEL_FW_GET_INFO: fwst.get_info,
                   intel.ND_INTEL_FW_START_UPDATE: fwst.start,
                   intel.ND_INTEL_FW_SEND_DATA: fwst.send,
                   intel.ND_INTEL_FW_FINISH_UPDATE: lambda p: fwst.finish(p, now),
                   intel.ND_INTEL_FW_FINISH_QUERY: lambda p: fwst.query(p, now),
                   intel.NVDIMM_INTEL_FW_ACTIVATE_DIMMINFO: lambda p: self._dimminfo(p, fwst, now),
                   intel.NVDIMM_INTEL_FW_ACTIVATE_ARM: fwst.arm}[func]
        return _run_payload(handler, buf, length)

    # -- firmware activation ------------------------------------------------------------

    def _businfo(self, now: float) -> tuple:
        """The platform's activation state: armed while any DIMM is, else busy
        for FWA_SECONDS after an activation; each armed DIMM costs a second
        of the 3 s quiesce budget."""
        armed = sum(1 for f in self.fw.values() if f.armed)
        last = self.module.last_activate
        if armed:
            state = intel.ND_INTEL_FWA_ARMED
        elif last is None or now > last + FWA_SECONDS:
            state = intel.ND_INTEL_FWA_IDLE
        else:
            state = intel.ND_INTEL_FWA_BUSY
        tmo = int(armed * FWA_SECONDS_PER_DIMM * USEC_PER_SEC)
        cap = (intel.ND_INTEL_BUS_FWA_CAP_FWQUIESCE | intel.ND_INTEL_BUS_FWA_CAP_OSQUIESCE
               | intel.ND_INTEL_BUS_FWA_CAP_RESET)
        return 0, cap, state, tmo, tmo, tmo, int(FWA_SECONDS * USEC_PER_SEC)

    def _bus_businfo(self, p: bytearray, now: float) -> tuple[int, int]:
        _put(p, intel.BUSINFO, *self._businfo(now))
        return 0, 0

    def _bus_activate(self, bus, p: bytearray, now: float) -> tuple[int, int]:
        """Activate every armed DIMM (even past the quiesce budget, reporting
        the timeout); one armed without a staged image missed it."""
        _s, _cap, state, tmo, _cpu, _io, max_tmo = self._businfo(now)
        status = 0
        if state == intel.ND_INTEL_FWA_BUSY:
            status = intel.ND_INTEL_BUS_FWA_STATUS_BUSY
        elif tmo > max_tmo:
            status = intel.ND_INTEL_BUS_FWA_STATUS_TMO
        elif state == intel.ND_INTEL_FWA_IDLE:
            status = intel.ND_INTEL_BUS_FWA_STATUS_NOARM
        _status(p, 1, status)
        if status and status != intel.ND_INTEL_BUS_FWA_STATUS_TMO:
            return 0, 0
        self.module.last_activate = now
        for f in self.fw.values():
            if not f.armed:
                continue
            if f.state != FW_STATE_UPDATED:
                f.missed_activate = True
            else:
                f.state = FW_STATE_NEW
            f.armed = False
            f.last_activate = now
        # the busy spell ends on its own: let sysfs readers see it end
        timers(bus.kernel).call_later(FWA_SECONDS + 0.01, lambda: None)
        return 0, 0

    def _dimminfo(self, p: bytearray, fwst: NfitTestFw, now: float) -> tuple[int, int]:
        """A DIMM follows the bus while idle or busy; its result is that of
        the last activation, once the bus has settled."""
        bus_state = self._businfo(now)[2]
        if bus_state in (intel.ND_INTEL_FWA_BUSY, intel.ND_INTEL_FWA_IDLE):
            state = bus_state
        else:
            state = intel.ND_INTEL_FWA_ARMED if fwst.armed else intel.ND_INTEL_FWA_IDLE
        result = intel.ND_INTEL_DIMM_FWA_NONE
        last = self.module.last_activate
        if last is not None and fwst.last_activate == last and state == intel.ND_INTEL_FWA_IDLE:
            result = (intel.ND_INTEL_DIMM_FWA_NOTSTAGED if fwst.missed_activate
                      else intel.ND_INTEL_DIMM_FWA_SUCCESS)
        _put(p, intel.DIMMINFO, 0, result, state)
        return 0, 0

    def _bus_intel(self, bus, buf: bytearray) -> int:
        """The Intel bus family: only the kernel's own calls get here."""
        func = struct.unpack_from("<Q", buf, 8)[0]
        size_in, size_out = struct.unpack_from("<II", buf, 16)
        now = timers(bus.kernel).now()
        if func == intel.NVDIMM_BUS_INTEL_FW_ACTIVATE_BUSINFO:
            return _run_payload(lambda p: self._bus_businfo(p, now), buf, size_in + size_out)
        if func == intel.NVDIMM_BUS_INTEL_FW_ACTIVATE:
            return _run_payload(lambda p: self._bus_activate(bus, p, now), buf, size_in + size_out)
        raise Errno(errno.ENOTTY, f"Intel bus function {func} not emulated")

    # -- the bus ---------------------------------------------------------------------

    def _bus(self, bus, nr: int, buf: bytearray) -> int:
        if nr == ND_CMD_CALL and struct.unpack_from("<Q", buf, 0)[0] == intel.NVDIMM_BUS_FAMILY_INTEL:
            return self._bus_intel(bus, buf)
        firmware = bus.provider_data.fw
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


def _put(p: bytearray, fmt: struct.Struct, *values) -> None:
    """Fill a packed struct into the payload, as far as the payload goes."""
    data = fmt.pack(*values)
    n = min(len(data), len(p))
    p[:n] = data[:n]


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


@dataclass
class NfitTestModule:
    """What nfit_test keeps for all its instances: when it last activated
    firmware (None: never since it loaded)."""

    last_activate: float | None = None


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
        self.state = NfitTestModule()          # the module's statics

    def probe(self, dev) -> None:
        make = self.nfits.get(dev.name)
        if make is None:
            raise Errno(errno.ENODEV, f"no NFIT for {dev.name}")
        handles = HANDLES.get(int(dev.name.rpartition(".")[2]), (0, []))
        dev.driver_data = nfit_register(self.kernel, make(), parent=dev,
                                        ndctl=NfitTestCtl(self.state, handles))
        _test_dimms(self.kernel, dev)

    def remove(self, dev) -> None:
        bus = dev.driver_data
        if bus is not None:
            if bus.provider_data.scrubber is not None:
                bus.provider_data.scrubber.shutdown()
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
