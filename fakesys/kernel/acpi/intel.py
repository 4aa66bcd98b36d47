"""Intel NVDIMM firmware activation (drivers/acpi/nfit/intel.c, intel.h).

The NFIT's implementation of the nvdimm core's firmware-activate ops
(nvdimm/bus.py ``NvdimmBusFwOps``, nvdimm/dimm.py ``NvdimmFwOps``): each
asks the platform through the provider's own command handler
(``nd_desc->ndctl``), with an Intel-family nd_cmd_pkg, and caches the
answer the way the kernel does, so that a sysfs read between two changes
does not reach the platform again:

* the bus caches its state and capability (``acpi_nfit_desc``: here
  :class:`NfitBusState`'s ``fwa_*`` fields) until a DIMM is armed or
  disarmed, or an activation runs;
* each DIMM caches its state and result (``nfit_mem``: :class:`NfitMemFwa`
  on ``Nvdimm.fwa``) until an activation bumps the bus's ``fwa_count``.

Userspace never reaches these functions: acpi_nfit_clear_to_send() keeps
the Intel firmware-activate functions for the kernel, and the bus family
Intel is not one an ioctl may name.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass

from fakesys.errors import Errno
from fakesys.kernel.nvdimm.bus import (
    NVDIMM_FWA_ARM, NVDIMM_FWA_ARM_OVERFLOW, NVDIMM_FWA_ARMED, NVDIMM_FWA_BUSY,
    NVDIMM_FWA_CAP_INVALID, NVDIMM_FWA_CAP_LIVE, NVDIMM_FWA_CAP_NONE, NVDIMM_FWA_CAP_QUIESCE,
    NVDIMM_FWA_IDLE, NVDIMM_FWA_INVALID, NVDIMM_FWA_RESULT_FAIL, NVDIMM_FWA_RESULT_INVALID,
    NVDIMM_FWA_RESULT_NEEDRESET, NVDIMM_FWA_RESULT_NONE, NVDIMM_FWA_RESULT_NOTSTAGED,
    NVDIMM_FWA_RESULT_SUCCESS,
)
from fakesys.kernel.uapi.ndctl import ND_CMD_CALL, ND_CMD_PKG_SIZE, NVDIMM_FAMILY_INTEL

NVDIMM_BUS_FAMILY_INTEL = 1

# DIMM functions of the Intel family (intel.h)
ND_INTEL_FW_GET_INFO = 12
ND_INTEL_FW_START_UPDATE = 13
ND_INTEL_FW_SEND_DATA = 14
ND_INTEL_FW_FINISH_UPDATE = 15
ND_INTEL_FW_FINISH_QUERY = 16
NVDIMM_INTEL_FW_ACTIVATE_DIMMINFO = 29
NVDIMM_INTEL_FW_ACTIVATE_ARM = 30
# bus functions of the Intel bus family
NVDIMM_BUS_INTEL_FW_ACTIVATE_BUSINFO = 1
NVDIMM_BUS_INTEL_FW_ACTIVATE = 2

# firmware-reported activation states, DIMM results, arm values
ND_INTEL_FWA_IDLE, ND_INTEL_FWA_ARMED, ND_INTEL_FWA_BUSY = range(3)
(ND_INTEL_DIMM_FWA_NONE, ND_INTEL_DIMM_FWA_NOTSTAGED, ND_INTEL_DIMM_FWA_SUCCESS,
 ND_INTEL_DIMM_FWA_NEEDRESET, ND_INTEL_DIMM_FWA_MEDIAFAILED, ND_INTEL_DIMM_FWA_ABORT,
 ND_INTEL_DIMM_FWA_NOTSUPP, ND_INTEL_DIMM_FWA_ERROR) = range(8)
ND_INTEL_DIMM_FWA_DISARM, ND_INTEL_DIMM_FWA_ARM = range(2)
ND_INTEL_BUS_FWA_CAP_FWQUIESCE = 1 << 0
ND_INTEL_BUS_FWA_CAP_OSQUIESCE = 1 << 1
ND_INTEL_BUS_FWA_CAP_RESET = 1 << 2
ND_INTEL_BUS_FWA_IODEV_FORCE_IDLE, ND_INTEL_BUS_FWA_IODEV_OS_IDLE = range(2)
ND_INTEL_BUS_FWA_STATUS_NOARM = 6 | 1 << 16
ND_INTEL_BUS_FWA_STATUS_BUSY = 6 | 2 << 16
ND_INTEL_BUS_FWA_STATUS_TMO = 6 | 4 << 16

# packed payloads: struct format and size
BUSINFO = struct.Struct("<IHBIIII")     # status, capability, state, activate/cpu/io/max tmo
BUS_ACTIVATE = struct.Struct("<BI")     # iodev_state, status
DIMMINFO = struct.Struct("<IHB7x")      # status, result, state
ARM = struct.Struct("<BI")              # activate_arm, status

_STATE = {ND_INTEL_FWA_IDLE: NVDIMM_FWA_IDLE, ND_INTEL_FWA_BUSY: NVDIMM_FWA_BUSY,
          ND_INTEL_FWA_ARMED: NVDIMM_FWA_ARMED}
_RESULT = {ND_INTEL_DIMM_FWA_NONE: NVDIMM_FWA_RESULT_NONE,
           ND_INTEL_DIMM_FWA_SUCCESS: NVDIMM_FWA_RESULT_SUCCESS,
           ND_INTEL_DIMM_FWA_NOTSTAGED: NVDIMM_FWA_RESULT_NOTSTAGED,
           ND_INTEL_DIMM_FWA_NEEDRESET: NVDIMM_FWA_RESULT_NEEDRESET}


def call(bus, nvdimm, family: int, func: int, payload: bytes, size_out: int) -> tuple[int, bytes]:
    """A kernel-made nd_cmd_pkg call to the provider (nd_desc->ndctl or
    nvdimm_ctl()): the provider's rc (0 or -errno) and the payload after."""
    pkg = bytearray(struct.pack("<QQII36xI", family, func, len(payload), size_out, size_out))
    buf = pkg + payload + bytes(size_out)
    try:
        rc = bus.ndctl_handler.ctl(bus, nvdimm, ND_CMD_CALL, buf)
    except Errno as e:
        return -e.errno, b""
    return (rc if rc < 0 else 0), bytes(buf[ND_CMD_PKG_SIZE:])


@dataclass
class NfitMemFwa:
    """nfit_mem's firmware-activate cache for one DIMM."""

    state: int = NVDIMM_FWA_INVALID
    result: int = NVDIMM_FWA_RESULT_INVALID
    count: int = 0


class IntelBusFwOps:
    """intel_bus_fw_ops: the bus's state, capability and activate."""

    def businfo(self, bus) -> tuple[int, tuple]:
        rc, out = call(bus, None, NVDIMM_BUS_FAMILY_INTEL, NVDIMM_BUS_INTEL_FW_ACTIVATE_BUSINFO,
                       b"", BUSINFO.size)
        return rc, (BUSINFO.unpack_from(out) if rc == 0 else ())

    def activate_state(self, bus) -> int:
        """intel_bus_fwa_state(): cached unless invalid or busy (busy must
        resolve, so it is asked again); armed past the platform's quiesce
        budget is overflow.  The capability comes with the same answer."""
        acpi = bus.provider_data
        if acpi.fwa_state not in (NVDIMM_FWA_INVALID, NVDIMM_FWA_BUSY) \
                and acpi.fwa_cap != NVDIMM_FWA_CAP_INVALID:
            return acpi.fwa_state
        rc, info = self.businfo(bus)
        if rc:
            return NVDIMM_FWA_INVALID
        _status, capability, fw_state, activate_tmo, _cpu, _io, max_quiesce_tmo = info
        if fw_state == ND_INTEL_FWA_ARMED:
            state = NVDIMM_FWA_ARM_OVERFLOW if activate_tmo > max_quiesce_tmo else NVDIMM_FWA_ARMED
        elif fw_state in _STATE:
            state = _STATE[fw_state]
        else:
            return NVDIMM_FWA_INVALID
        if acpi.fwa_cap == NVDIMM_FWA_CAP_INVALID:
            acpi.fwa_cap = _capability(capability)
        acpi.fwa_state = state
        return state

    def capability(self, bus) -> int:
        acpi = bus.provider_data
        if acpi.fwa_cap > NVDIMM_FWA_CAP_INVALID:
            return acpi.fwa_cap
        if self.activate_state(bus) > NVDIMM_FWA_INVALID:
            return acpi.fwa_cap
        return NVDIMM_FWA_CAP_INVALID

    def activate(self, bus) -> int:
        """intel_bus_fwa_activate(): only from armed (or overflow); whatever
        the platform says, every DIMM must be asked again afterwards."""
        acpi = bus.provider_data
        if self.activate_state(bus) not in (NVDIMM_FWA_ARMED, NVDIMM_FWA_ARM_OVERFLOW):
            return -errno.ENXIO
        iodev = ND_INTEL_BUS_FWA_IODEV_OS_IDLE if acpi.fwa_noidle else ND_INTEL_BUS_FWA_IODEV_FORCE_IDLE
        rc, _out = call(bus, None, NVDIMM_BUS_FAMILY_INTEL, NVDIMM_BUS_INTEL_FW_ACTIVATE,
                        bytes([iodev]), BUS_ACTIVATE.size)
        acpi.fwa_state = NVDIMM_FWA_INVALID
        acpi.fwa_count += 1
        return rc


def _capability(bits: int) -> int:
    """The platform's capability bits as the kernel ranks them: firmware
    quiesce first, then OS quiesce (which the kernel takes as live)."""
    if bits & ND_INTEL_BUS_FWA_CAP_FWQUIESCE:
        return NVDIMM_FWA_CAP_QUIESCE
    if bits & ND_INTEL_BUS_FWA_CAP_OSQUIESCE:
        return NVDIMM_FWA_CAP_LIVE
    return NVDIMM_FWA_CAP_NONE


class IntelFwOps:
    """intel_fw_ops: one DIMM's state, result and arm (cache on ``nvdimm.fwa``)."""

    def activate_state(self, nvdimm) -> int:
        """intel_fwa_state(): cached while no activation ran since."""
        fwa: NfitMemFwa = nvdimm.fwa
        acpi = nvdimm.nvdimm_bus.provider_data
        if fwa.state not in (NVDIMM_FWA_INVALID, NVDIMM_FWA_BUSY) and fwa.count == acpi.fwa_count:
            return fwa.state
        rc, out = call(nvdimm.nvdimm_bus, nvdimm, NVDIMM_FAMILY_INTEL,
                       NVDIMM_INTEL_FW_ACTIVATE_DIMMINFO, b"", DIMMINFO.size)
        if rc:
            return NVDIMM_FWA_INVALID
        _status, result, state = DIMMINFO.unpack_from(out)
        fwa.state = _STATE.get(state, NVDIMM_FWA_INVALID)
        fwa.result = _RESULT.get(result, NVDIMM_FWA_RESULT_FAIL)
        fwa.count = acpi.fwa_count
        return fwa.state

    def activate_result(self, nvdimm) -> int:
        fwa: NfitMemFwa = nvdimm.fwa
        if fwa.count == nvdimm.nvdimm_bus.provider_data.fwa_count \
                and fwa.result > NVDIMM_FWA_RESULT_INVALID:
            return fwa.result
        if self.activate_state(nvdimm) > NVDIMM_FWA_INVALID:
            return fwa.result
        return NVDIMM_FWA_RESULT_INVALID

    def arm(self, nvdimm, trigger: int) -> int:
        """intel_fwa_arm(): a no-op when already there, EBUSY while an
        activation settles; otherwise both caches are dropped first."""
        state = self.activate_state(nvdimm)
        if state == NVDIMM_FWA_BUSY:
            return -errno.EBUSY
        if state == NVDIMM_FWA_IDLE and trigger != NVDIMM_FWA_ARM:
            return 0
        if state == NVDIMM_FWA_ARMED and trigger == NVDIMM_FWA_ARM:
            return 0
        if state not in (NVDIMM_FWA_IDLE, NVDIMM_FWA_ARMED):
            return -errno.ENXIO
        nvdimm.nvdimm_bus.provider_data.fwa_state = NVDIMM_FWA_INVALID
        nvdimm.fwa.state = NVDIMM_FWA_INVALID
        value = ND_INTEL_DIMM_FWA_ARM if trigger == NVDIMM_FWA_ARM else ND_INTEL_DIMM_FWA_DISARM
        rc, _out = call(nvdimm.nvdimm_bus, nvdimm, NVDIMM_FAMILY_INTEL,
                        NVDIMM_INTEL_FW_ACTIVATE_ARM, bytes([value]), ARM.size)
        return rc


INTEL_BUS_FW_OPS = IntelBusFwOps()
INTEL_FW_OPS = IntelFwOps()
