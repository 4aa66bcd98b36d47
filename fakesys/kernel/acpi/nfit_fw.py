"""The platform behind an NFIT: media errors, ARS, Intel SMART.

Two halves, as on a real machine:

* :class:`Firmware` is what answers the ARS / error-injection DSMs of one
  NFIT (the role nfit_test's ``ars_state`` and ``badrange`` play, or a
  BIOS's): its own list of poisoned ranges (``poison``: injected through
  the ARS-inject DSMs, declared in the topology, or added through
  :meth:`Firmware.inject`), and the result of the last ARS it ran.  An
  ARS takes ``ars_seconds``; until then ARS_START answers "busy" and
  ARS_STATUS "in progress".  CLEAR_ERROR forgets the range (in units of
  ``clear_err_unit``).
* :class:`Scrubber` is the kernel's ARS work on that bus
  (drivers/acpi/nfit/core.c: ``acpi_nfit_ars_rescan``, ``ars_start``,
  ``ars_status_process_records``): it scrubs every persistent-memory SPA
  range in turn, adds what the firmware reports to the bus's known-poison
  list (what region/namespace/pmem ``badblocks`` show), then bumps the
  ``nfit/scrub`` count and notifies pollers.  At registration it takes
  the firmware's previous results synchronously (the short ARS of
  ``ars_register``), so declared errors show in badblocks from boot.

:class:`IntelSmart` is one DIMM's health state for the Intel DSM family
(SMART, SMART threshold get/set, SMART inject, latch shutdown status),
with nfit_test's defaults.

Every command works on its payload in place (input fields then output
fields, the layout of both the nd_cmd envelope and an nd_cmd_pkg payload)
and returns ``(rc, cmd_rc)``: ``rc`` < 0 fails the ioctl, ``cmd_rc`` is
the firmware-level result the kernel's own callers look at.  No trio,
no FUSE.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field

from fakesys.errors import Errno
from fakesys.kernel.base.timer import timers
from fakesys.kernel.nvdimm.badrange import Badrange, bus_badrange
from fakesys.kernel.nvdimm.bus import NvdimmBus
from fakesys.kernel.uapi.ndctl import (
    ND_CMD_ARS_START, ND_CMD_CALL, NVDIMM_BUS_FAMILY_NFIT, NVDIMM_CMD_MAX, NVDIMM_FAMILY_INTEL,
)

# ndctl.h / nfit.h
ND_ARS_VOLATILE = 1
ND_ARS_PERSISTENT = 2
NFIT_ARS_STATUS_BUSY = 1 << 16
NFIT_ARS_START_BUSY = 6
NFIT_ARS_INJECT_INVALID = 2
ND_ARS_ERR_INJ_OPT_NOTIFY = 0
ARS_STATUS_HDR = 48
ARS_RECORD = 24
L1_CACHE_BYTES = 64

NFIT_CMD_TRANSLATE_SPA = 5
NFIT_CMD_ARS_INJECT_SET = 7
NFIT_CMD_ARS_INJECT_CLEAR = 8
NFIT_CMD_ARS_INJECT_GET = 9

# Intel DSM family (intel.h)
ND_INTEL_SMART = 1
ND_INTEL_SMART_THRESHOLD = 2
ND_INTEL_ENABLE_LSS_STATUS = 10
ND_INTEL_SMART_SET_THRESHOLD = 17
ND_INTEL_SMART_INJECT = 18

SMART_HEALTH_VALID = 1 << 0
SMART_SPARES_VALID = 1 << 1
SMART_USED_VALID = 1 << 2
SMART_MTEMP_VALID = 1 << 3
SMART_CTEMP_VALID = 1 << 4
SMART_SHUTDOWN_COUNT_VALID = 1 << 5
SMART_ALARM_VALID = 1 << 9
SMART_SHUTDOWN_VALID = 1 << 10
SPARE_TRIP = 1 << 0
TEMP_TRIP = 1 << 1
CTEMP_TRIP = 1 << 2
HEALTH_NON_CRITICAL = 1 << 0
HEALTH_CRITICAL = 1 << 1
HEALTH_FATAL = 1 << 2
INJECT_MTEMP = 1 << 0
INJECT_SPARE = 1 << 1
INJECT_FATAL = 1 << 2
INJECT_SHUTDOWN = 1 << 3

_U64 = (1 << 64) - 1


def _st(p: bytearray, fmt: str, off: int, *values) -> None:
    struct.pack_into("<" + fmt, p, off, *values)


def _ld(p: bytes | bytearray, fmt: str, off: int):
    size = struct.calcsize("<" + fmt)
    if off + size > len(p):
        p = bytes(p) + bytes(off + size - len(p))
    return struct.unpack_from("<" + fmt, p, off)


# ---------------------------------------------------------------------------
# the platform: poison list and ARS engine


class Firmware:
    """ARS and error injection of one NFIT (one bus)."""

    def __init__(self, kernel, ars_seconds: float = 1.0, clear_err_unit: int = 256,
                 max_records: int = 4096 // ARS_RECORD, poison=()) -> None:
        self.kernel = kernel
        self.ars_seconds = ars_seconds
        self.clear_err_unit = clear_err_unit
        self.max_records = max_records
        self.poison = Badrange(poison)
        self.deadline = 0.0
        self.status = self._status_buf(0, 0, [])    # the last ARS result (nd_cmd_ars_status)

    # -- helpers ------------------------------------------------------------

    @property
    def now(self) -> float:
        return timers(self.kernel).now()

    def busy(self) -> bool:
        return self.now < self.deadline

    def inject(self, start: int, length: int) -> None:
        """Python API: the platform finds poison here (ARS will report it)."""
        self.poison.add(start, length)

    def _status_buf(self, addr: int, length: int, records) -> bytes:
        b = bytearray(ARS_STATUS_HDR + ARS_RECORD * len(records))
        _st(b, "IIQQQQHHI", 0, 0, len(b), addr, length, 0, 0, ND_ARS_PERSISTENT, 0, len(records))
        for i, (a, n) in enumerate(records):
            _st(b, "IIQQ", ARS_STATUS_HDR + i * ARS_RECORD, 0, 0, a, n)
        return bytes(b)

    def start_scrub(self, addr: int, length: int) -> None:
        """post_ars_status(): scrub [addr, addr+length) now, done after ars_seconds."""
        self.deadline = self.now + self.ars_seconds
        records = self.poison.overlapping(addr, length)[:self.max_records]
        self.status = self._status_buf(addr, length, records)

    def records(self) -> list[tuple[int, int]]:
        """The error records of the last completed ARS."""
        n = _ld(self.status, "I", 44)[0]
        return [_ld(self.status, "QQ", ARS_STATUS_HDR + i * ARS_RECORD + 8) for i in range(n)]

    # -- bus commands (payload in place) ------------------------------------------

    def ars_cap(self, p: bytearray) -> tuple[int, int]:
        if len(p) < 32:
            return -errno.EINVAL, 0
        max_out = ARS_STATUS_HDR + self.max_records * ARS_RECORD
        _st(p, "IIIHH", 16, (ND_ARS_PERSISTENT | ND_ARS_VOLATILE) << 16, max_out,
            self.clear_err_unit, 0, 0)
        return 0, 0

    def ars_start(self, p: bytearray) -> tuple[int, int]:
        if len(p) < 32:
            return -errno.EINVAL, 0
        addr, length = _ld(p, "QQ", 0)
        if self.busy():
            _st(p, "I", 24, NFIT_ARS_START_BUSY)
            return 0, -errno.EBUSY
        _st(p, "II", 24, 0, 1)
        self.start_scrub(addr, length)
        return 0, 0

    def ars_status(self, p: bytearray) -> tuple[int, int]:
        if len(p) < len(self.status):
            return -errno.EINVAL, 0
        if self.busy():
            p[:] = bytes(len(p))
            _st(p, "II", 0, NFIT_ARS_STATUS_BUSY, ARS_STATUS_HDR)
            return 0, -errno.EBUSY
        p[:len(self.status)] = self.status
        return 0, 0

    def clear_error(self, p: bytearray) -> tuple[int, int]:
        if len(p) < 32:
            return -errno.EINVAL, 0
        addr, length = _ld(p, "QQ", 0)
        mask = self.clear_err_unit - 1
        if addr & mask or length & mask:
            return -errno.EINVAL, 0
        self.poison.forget(addr, length)
        _st(p, "I4xQ", 16, 0, length)
        return 0, 0

    def inject_set(self, p: bytearray, notify) -> tuple[int, int]:
        if len(p) != 21:
            if len(p) >= 21:
                _st(p, "I", 17, NFIT_ARS_INJECT_INVALID)
            return -errno.EINVAL, 0
        base, length, options = _ld(p, "QQB", 0)
        if length <= 0:
            _st(p, "I", 17, NFIT_ARS_INJECT_INVALID)
            return -errno.EINVAL, 0
        self.poison.add(base, length)
        if options & (1 << ND_ARS_ERR_INJ_OPT_NOTIFY) and notify is not None:
            notify()
        _st(p, "I", 17, 0)
        return 0, 0

    def inject_clear(self, p: bytearray) -> tuple[int, int]:
        if len(p) != 20:
            if len(p) >= 20:
                _st(p, "I", 16, NFIT_ARS_INJECT_INVALID)
            return -errno.EINVAL, 0
        base, length = _ld(p, "QQ", 0)
        if length <= 0:
            _st(p, "I", 16, NFIT_ARS_INJECT_INVALID)
            return -errno.EINVAL, 0
        self.poison.forget(base, length)
        _st(p, "I", 16, 0)
        return 0, 0

    def inject_get(self, p: bytearray) -> tuple[int, int]:
        entries = list(self.poison)[:4096 // 16]
        room = max((len(p) - 8) // 16, 0)
        if len(p) >= 4:
            _st(p, "I", 0, 0)
        count = 0
        for i, (base, length) in enumerate(entries):
            if i >= room:
                break
            _st(p, "QQ", 8 + 16 * i, base, length)
            count += 1
        if len(p) >= 8:
            _st(p, "I", 4, count)
        return 0, 0

    def translate_spa(self, bus, p: bytearray) -> tuple[int, int]:
        """nfit_test_cmd_translate_spa(): the last DIMM of the region holding the SPA."""
        if len(p) < 32:
            return -errno.EINVAL, 0
        spa = _ld(p, "Q", 0)[0]
        translate_length = _ld(p, "Q", 16)[0]
        if len(p) < translate_length:
            return -errno.EINVAL, 0
        region = next((r for r in bus.regions() if r.start <= spa < r.start + r.size), None)
        if region is None or not region.mappings:
            _st(p, "I", 8, 2)
            return 0, 0
        nvdimm = region.mappings[-1].nvdimm
        handle = nvdimm.spec.handle if nvdimm.spec is not None else nvdimm.id
        _st(p, "I", 24, 1)
        if len(p) >= 44:
            _st(p, "IIQ", 28, handle, 0, spa - region.start)
        return 0, 0


ARS_REQ_SHORT = "short"
ARS_REQ_LONG = "long"


class Scrubber:
    """The kernel's ARS work for one NFIT bus (acpi_desc->dwork)."""

    def __init__(self, kernel, bus, fw: Firmware, ranges: list[tuple[int, int]]) -> None:
        self.kernel = kernel
        self.bus = bus
        self.fw = fw
        self.ranges = list(ranges)          # PM / volatile SPA ranges, NFIT order
        self.count = 0                      # scrub_count
        self.req: list[set[str]] = [set() for _ in self.ranges]   # nfit_spa->ars_state request bits
        self.current: tuple[int, str] | None = None
        self.cancel = False
        self.attr = None                    # the nfit/scrub File, notified on completion
        self._timer = None

    @property
    def busy(self) -> bool:
        """work_busy(): a scrub is queued or running."""
        return (self.current is not None or any(self.req)) and not self.cancel

    def register(self) -> None:
        """ars_register(): take the firmware's previous result at once, then a long scrub."""
        for addr, length in self.fw.poison:
            if any(s <= addr < s + n for s, n in self.ranges):
                self._add(addr, length)
        self.rescan(ARS_REQ_LONG)

    def rescan(self, req_type: str = ARS_REQ_LONG) -> int:
        """acpi_nfit_ars_rescan(): 0 scheduled, -EBUSY already requested
        everywhere, -ENOTTY nothing to scrub."""
        if self.cancel:
            return 0
        scheduled = busy = 0
        for bits in self.req:
            if req_type in bits:
                busy += 1
            else:
                bits.add(req_type)
                scheduled += 1
        if scheduled:
            if self.current is None and self._timer is None:
                self._schedule(0.0)
            return 0
        return -errno.EBUSY if busy else -errno.ENOTTY

    def shutdown(self) -> None:
        self.cancel = True
        if self._timer is not None:
            self._timer.cancel()
        self.req = [set() for _ in self.ranges]
        self.current = None

    # -- the work ---------------------------------------------------------------

    def _schedule(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = timers(self.kernel).call_later(delay, self._work)

    def _work(self) -> None:
        self._timer = None
        if self.cancel:
            return
        fw = self.fw
        if self.current is not None:
            if fw.busy():
                self._schedule(fw.deadline - fw.now)
                return
            for addr, length in fw.records():
                self._add(addr, length)
            index, req_type = self.current
            self.req[index].discard(req_type)   # ars_complete()
            self.current = None
        todo = [(i, ARS_REQ_SHORT if ARS_REQ_SHORT in bits else ARS_REQ_LONG)
                for i, bits in enumerate(self.req) if bits]
        if not todo:
            self.count += 1
            if self.attr is not None:
                self.attr.notify()
            return
        if fw.busy():                       # someone else's ARS: wait for it
            self._schedule(fw.deadline - fw.now)
            return
        self.current = todo[0]
        fw.start_scrub(*self.ranges[self.current[0]])
        self._schedule(fw.ars_seconds)

    def _add(self, addr: int, length: int) -> None:
        """ars_status_process_records(): cache-line aligned, into the bus list."""
        start = addr // L1_CACHE_BYTES * L1_CACHE_BYTES
        end = -(-(addr + length) // L1_CACHE_BYTES) * L1_CACHE_BYTES
        bus_badrange(self.bus).add(start, end - start)

    def show(self) -> str:
        return f"{self.count}{'+' if self.busy else ''}\n"


# ---------------------------------------------------------------------------
# Intel SMART


@dataclass
class IntelSmart:
    """One DIMM's SMART payload and thresholds (nfit_test's smart_def / smart_t_data)."""

    flags: int = (SMART_HEALTH_VALID | SMART_SPARES_VALID | SMART_ALARM_VALID | SMART_USED_VALID
                  | SMART_SHUTDOWN_VALID | SMART_SHUTDOWN_COUNT_VALID | SMART_MTEMP_VALID
                  | SMART_CTEMP_VALID)
    health: int = HEALTH_NON_CRITICAL
    spares: int = 75
    life_used: int = 5
    alarm_flags: int = SPARE_TRIP | TEMP_TRIP
    media_temperature: int = 23 * 16
    ctrl_temperature: int = 25 * 16
    shutdown_count: int = 42
    ait_status: int = 1
    pmic_temperature: int = 40 * 16
    shutdown_state: int = 0
    t_alarm_control: int = SPARE_TRIP | TEMP_TRIP
    t_spares: int = 5
    t_media_temperature: int = 40 * 16
    t_ctrl_temperature: int = 30 * 16
    defaults: dict = field(default_factory=dict, repr=False)
    notify: object = None                # called on a health event (acpi notify 0x81)

    def __post_init__(self) -> None:
        self.defaults = {"media_temperature": self.media_temperature, "spares": self.spares}

    def smart(self, p: bytearray) -> tuple[int, int]:
        if len(p) < 132:
            return -errno.EINVAL, 0
        p[:132] = bytes(132)
        _st(p, "II4xBBBBHHIBH8xBI", 0, 0, self.flags, self.health, self.spares, self.life_used,
            self.alarm_flags, self.media_temperature, self.ctrl_temperature, self.shutdown_count,
            self.ait_status, self.pmic_temperature, self.shutdown_state, 0)
        return 0, 0

    def threshold(self, p: bytearray) -> tuple[int, int]:
        if len(p) < 12:
            return -errno.EINVAL, 0
        p[:12] = bytes(12)
        _st(p, "IHBHH", 0, 0, self.t_alarm_control, self.t_spares, self.t_media_temperature,
            self.t_ctrl_temperature)
        return 0, 0

    def set_threshold(self, p: bytearray) -> tuple[int, int]:
        if len(p) < 7:
            return -errno.EINVAL, 0
        (self.t_alarm_control, self.t_spares, self.t_media_temperature,
         self.t_ctrl_temperature) = _ld(p, "HBHH", 0)
        if len(p) >= 11:
            _st(p, "I", 7, 0)
        self._check()
        return 0, 0

    def inject(self, p: bytearray) -> tuple[int, int]:
        if len(p) != 19:
            return -errno.EINVAL, 0
        flags, mtemp_en, mtemp, spare_en, spares, fatal_en, unsafe_en = _ld(p, "QBHBBBB", 0)
        if flags & INJECT_MTEMP:
            self.media_temperature = mtemp if mtemp_en else self.defaults["media_temperature"]
        if flags & INJECT_SPARE:
            self.spares = spares if spare_en else self.defaults["spares"]
        if flags & INJECT_FATAL:
            self.health = HEALTH_FATAL if fatal_en else HEALTH_NON_CRITICAL
        if flags & INJECT_SHUTDOWN:
            if unsafe_en:
                self.shutdown_state = 1
                self.shutdown_count = (self.shutdown_count + 1) & 0xFFFFFFFF
            else:
                self.shutdown_state = 0
        _st(p, "I", 15, 0)
        self._check()
        return 0, 0

    def lss(self, p: bytearray) -> tuple[int, int]:
        """ND_INTEL_ENABLE_LSS_STATUS: {u8 enable; u32 status}."""
        if len(p) < 5:
            return -errno.EINVAL, 0
        _st(p, "I", 1, 0 if p[0] in (0, 1) else 3)
        return 0, 0

    def _check(self) -> None:
        """smart_notify(): a health event when a threshold trips or health is bad."""
        tripped = ((self.t_alarm_control & SPARE_TRIP and self.spares <= self.t_spares)
                   or (self.t_alarm_control & TEMP_TRIP and self.media_temperature >= self.t_media_temperature)
                   or (self.t_alarm_control & CTEMP_TRIP and self.ctrl_temperature >= self.t_ctrl_temperature)
                   or self.health != HEALTH_NON_CRITICAL or self.shutdown_state != 0)
        if tripped and callable(self.notify):
            self.notify()


def fw_get_info(p: bytearray) -> tuple[int, int]:
    """ND_INTEL_FW_GET_INFO as nfit_test answers it (nothing staged, versions 0)."""
    if len(p) < 44:
        return -errno.EINVAL, 0
    p[:44] = bytes(44)
    _st(p, "IIIIIB3xIQQ", 0, 0, 0x100000, 0xFEC, 250000, 3000000, 0, 0x0105, 0, 0)
    return 0, 0


# ---------------------------------------------------------------------------
# the provider's command gate (acpi_nfit_clear_to_send)

# Intel security (19-28) and firmware-activate (29, 30) functions: kernel only
NVDIMM_INTEL_DENY_CMDS = sum(1 << f for f in range(19, 31))


def acpi_nfit_clear_to_send(bus, nvdimm, cmd: int, buf) -> None:
    """acpi_nfit_clear_to_send(); ``cmd`` is what bus.c passes: the CALL's
    function number for a CALL, so the family checks below only ever see
    a CALL of function 10 and the ARS check a bus CALL of function 2."""
    family = func = None
    if cmd == ND_CMD_CALL and len(buf) >= 16:
        family, func = struct.unpack_from("<QQ", buf, 0)
    if nvdimm is not None and cmd == ND_CMD_CALL and family == NVDIMM_FAMILY_INTEL:
        if func > NVDIMM_CMD_MAX or (1 << func) & NVDIMM_INTEL_DENY_CMDS:
            raise Errno(errno.EOPNOTSUPP, f"Intel function {func} is for the kernel only")
    if nvdimm is None and cmd == ND_CMD_CALL and family != NVDIMM_BUS_FAMILY_NFIT:
        raise Errno(errno.EOPNOTSUPP, f"bus family {family} blocked")
    if nvdimm is not None or cmd != ND_CMD_ARS_START:
        return
    scrubber = bus.provider_data.scrubber
    if scrubber is not None and scrubber.busy:
        raise Errno(errno.EBUSY, "the kernel is scrubbing")


def uc_error_notify(bus) -> None:
    """NFIT_NOTIFY_UC_MEMORY_ERROR (queued work): a short scrub, or a long
    one when nfit/hw_error_scrub is 1 (acpi_nfit_uc_error_notify)."""
    state = bus.provider_data
    scrubber = state.scrubber
    if scrubber is not None:
        mode = ARS_REQ_LONG if state.hw_error_scrub else ARS_REQ_SHORT
        timers(scrubber.kernel).call_later(0.0, lambda: scrubber.rescan(mode))


def inject_media_error(kernel, spa: int, length: int = 512, scrub: bool = False):
    """Python API: the platform finds poison at [spa, spa+length).

    The NFIT bus whose SPA ranges hold ``spa`` gets it in its firmware's
    list; the kernel learns of it with the next scrub (``scrub=True``
    requests one, as a machine-check notification would).  Returns the bus.
    """
    for bus in kernel.nd.bus.devices.values() if kernel.nd is not None else ():
        state = bus.provider_data if isinstance(bus, NvdimmBus) else None
        if state is None or state.fw is None:
            continue
        if any(r.start <= spa < r.start + r.size for r in bus.regions()):
            state.fw.inject(spa, length)
            if scrub and state.scrubber is not None:
                state.scrubber.rescan(ARS_REQ_SHORT)
            return bus
    raise ValueError(f"no NFIT bus with ARS holds {spa:#x}")
