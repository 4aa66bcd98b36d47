"""acpi_nfit_ctl() (drivers/acpi/nfit/core.c): the NFIT's side of the nd ioctls.

An NFIT bus registers :data:`ACPI_NFIT_CTL` as its command handler
(nd_desc->ndctl); libnvdimm's ioctl path (nvdimm/ioctl.py) has checked
and sized the envelope and calls it.  Here a command becomes the ACPI
method QEMU's NVDIMM firmware answers: _LSI/_LSR/_LSW for the label area
when the DIMM has one, _DSM for the rest, with the platform functions of
nfit_fw.py (ARS, SMART, error injection) behind the _DSM numbers.
"""

from __future__ import annotations

import errno
import struct

from fakesys.errors import Errno
from fakesys.kernel.acpi import nfit_fw as fw
from fakesys.kernel.acpi.intel import ND_INTEL_FW_GET_INFO
from fakesys.kernel.acpi.nfit_fw import acpi_nfit_clear_to_send
from fakesys.kernel.nvdimm.ioctl import U32_MAX, FW_INVALID, FW_SUCCESS, cmd_desc, in_size, out_size
from fakesys.kernel.uapi.ndctl import (
    ND_CMD_ARS_CAP, ND_CMD_ARS_START, ND_CMD_ARS_STATUS, ND_CMD_CALL, ND_CMD_CLEAR_ERROR,
    ND_CMD_DIMM_FLAGS, ND_CMD_GET_CONFIG_DATA, ND_CMD_GET_CONFIG_SIZE, ND_CMD_PKG_SIZE,
    ND_CMD_SET_CONFIG_DATA, NVDIMM_BUS_FAMILY_NFIT, NVDIMM_CMD_MAX, NVDIMM_FAMILY_INTEL,
)


class AcpiNfitCtl:
    """acpi_nfit_ctl() for an NFIT bus whose DIMMs are QEMU NVDIMMs.

    A DIMM with a label area has _LSI/_LSR/_LSW, which the kernel prefers
    for GET_CONFIG_SIZE/DATA and SET_CONFIG_DATA; everything else (and
    every CALL) is a _DSM call.  DIMM family and _DSM mask come from the
    DIMM's NFIT description (``Nvdimm.spec``), the bus _DSM mask from the
    bus's (``NvdimmBus.spec`` when present, else none).
    """

    @staticmethod
    def dimm_family_mask(bus) -> int:
        mask = 0
        for dimm in bus.nvdimms():
            family = _family(dimm)
            if family is not None:
                mask |= 1 << family
        return mask

    @staticmethod
    def bus_family_mask(bus) -> int:
        return 1 << NVDIMM_BUS_FAMILY_NFIT

    @staticmethod
    def clear_to_send(bus, nvdimm, cmd: int, buf) -> None:
        acpi_nfit_clear_to_send(bus, nvdimm, cmd, buf)

    def ctl(self, bus, nvdimm, nr: int, buf: bytearray) -> int:
        is_dimm = nvdimm is not None
        desc = cmd_desc(is_dimm, nr)
        assert desc is not None
        pkg = nr == ND_CMD_CALL
        # cmd_to_func()
        if pkg:
            if len(buf) < ND_CMD_PKG_SIZE:
                raise Errno(errno.EINVAL, "short nd_cmd_pkg")
            family, func = struct.unpack_from("<QQ", buf, 0)
            if is_dimm and _family(nvdimm) != family:
                raise Errno(errno.ENOTTY, "family of another DIMM type")
            if any(struct.unpack_from("<9I", buf, 24)):
                raise Errno(errno.EINVAL, "nd_reserved2 is not zero")
        elif not is_dimm or _family(nvdimm) == NVDIMM_FAMILY_INTEL:
            func = nr
        else:
            func = 0
        dsm_mask = _dsm_mask(nvdimm) if is_dimm else _bus_dsm_mask(bus)
        cmd_mask = nvdimm.cmd_mask if is_dimm else bus.cmd_mask
        if pkg and (func > NVDIMM_CMD_MAX or not dsm_mask >> func & 1):
            raise Errno(errno.ENOTTY, f"_DSM function {func} not supported")
        if not pkg and not cmd_mask >> nr & 1:
            raise Errno(errno.ENOTTY, f"command {nr} not supported")

        handler = _firmware(bus, nvdimm, func)
        if handler is not None:
            # the platform's ARS / SMART functions (kernel/acpi/nfit_fw.py),
            # working on the input then output fields in place
            if pkg:
                size_in, size_out = struct.unpack_from("<II", buf, 16)
                n = max(0, min(size_in + size_out, len(buf) - ND_CMD_PKG_SIZE))
                payload = bytearray(buf[ND_CMD_PKG_SIZE:ND_CMD_PKG_SIZE + n])
                rc, _cmd_rc = handler(payload)
                buf[ND_CMD_PKG_SIZE:ND_CMD_PKG_SIZE + n] = payload
                struct.pack_into("<I", buf, 60, size_out)
            else:
                rc, _cmd_rc = handler(buf)
            if rc < 0:
                raise Errno(-rc, f"_DSM function {func} failed")
            return 0

        if pkg:
            size_in, size_out = struct.unpack_from("<II", buf, 16)
            payload = bytes(buf[ND_CMD_PKG_SIZE:ND_CMD_PKG_SIZE + size_in])
            if len(buf) < ND_CMD_PKG_SIZE + size_in + size_out:
                raise Errno(errno.EINVAL, "sizes wrapped: the kernel would overrun its buffer")
            out = self._dsm(bus, nvdimm, func, payload)
            struct.pack_into("<I", buf, 60, len(out))              # nd_fw_size
            n = min(len(out), size_out)
            start = ND_CMD_PKG_SIZE + size_in
            buf[start:start + n] = out[:n]
            return 0

        in_len = 0
        for i in range(len(desc.ins)):
            in_len = (in_len + (in_size(is_dimm, nr, desc, i, buf) or 0)) & U32_MAX
        if in_len > len(buf):
            raise Errno(errno.EINVAL, "sizes wrapped: the kernel would overrun its buffer")
        if is_dimm and nvdimm.lsa is not None and nr == ND_CMD_GET_CONFIG_SIZE:
            out = self._lsi(nvdimm)
        elif is_dimm and nvdimm.lsa is not None and nr == ND_CMD_GET_CONFIG_DATA:
            offset, length = struct.unpack_from("<II", buf, 0)
            out = self._lsr(nvdimm, offset, length)
        elif is_dimm and nvdimm.lsa is not None and nr == ND_CMD_SET_CONFIG_DATA:
            offset, length = struct.unpack_from("<II", buf, 0)
            out = self._lsw(nvdimm, offset, length, bytes(buf[8:8 + length]))
        else:
            out = self._dsm(bus, nvdimm, func, bytes(buf[:in_len]))

        # copy the output object into the output envelope, field by field
        offset = 0
        i = 0
        while i < len(desc.outs):
            size = out_size(is_dimm, nr, desc, i, buf, out, len(out) - offset)
            size = U32_MAX if size is None else size
            if offset + size > len(out):
                break                                   # output object underflow
            if in_len + offset + size > len(buf):
                raise Errno(errno.ENXIO, "output overrun")
            buf[in_len + offset:in_len + offset + size] = out[offset:offset + size]
            offset += size
            i += 1
        if offset + in_len < len(buf):
            if i >= 1:
                return len(buf) - offset - in_len       # bytes left unfilled
            raise Errno(errno.ENXIO, "output underrun")
        return 0

    # -- the firmware: QEMU hw/acpi/nvdimm.c ----------------------------------

    @staticmethod
    def _check(nvdimm, offset: int, length: int) -> int:
        """nvdimm_rw_label_data_check(): status of a label read/write request."""
        if offset + length > U32_MAX:
            return FW_INVALID
        if offset + length > nvdimm.lsa.size:
            return FW_INVALID
        if length > nvdimm.max_xfer:
            return FW_INVALID
        return FW_SUCCESS

    @staticmethod
    def _lsi(nvdimm) -> bytes:
        return struct.pack("<III", FW_SUCCESS, nvdimm.lsa.size, nvdimm.max_xfer)

    def _lsr(self, nvdimm, offset: int, length: int) -> bytes:
        # _LSR extracts LEN bytes after the status word of the _DSM reply;
        # on an error the reply is the status alone (and a zero-length
        # field is refused too), so the method faults: no object, EINVAL.
        if self._check(nvdimm, offset, length) != FW_SUCCESS or length == 0:
            raise Errno(errno.EINVAL, f"_LSR({offset:#x}, {length:#x}) failed")
        return struct.pack("<I", FW_SUCCESS) + nvdimm.lsa.read(offset, length)

    def _lsw(self, nvdimm, offset: int, length: int, data: bytes) -> bytes:
        status = self._check(nvdimm, offset, length)
        if status == FW_SUCCESS and length:
            nvdimm.lsa.write(offset, data[:length].ljust(length, b"\0"))
        return struct.pack("<I", status)

    def _dsm(self, bus, nvdimm, func: int, payload: bytes) -> bytes:
        """A _DSM call: the output buffer QEMU's NVDIMM _DSM returns."""
        if nvdimm is None or nvdimm.lsa is None and func in (4, 5, 6):
            raise Errno(errno.ENOTTY, f"_DSM function {func} is not emulated")
        payload = payload.ljust(8, b"\0")
        if func == ND_CMD_DIMM_FLAGS:
            return struct.pack("<II", FW_SUCCESS, 0)
        if func == ND_CMD_GET_CONFIG_SIZE:
            return self._lsi(nvdimm)
        if func == ND_CMD_GET_CONFIG_DATA:
            offset, length = struct.unpack_from("<II", payload, 0)
            status = self._check(nvdimm, offset, length)
            if status != FW_SUCCESS:
                return struct.pack("<I", status)
            return struct.pack("<I", FW_SUCCESS) + nvdimm.lsa.read(offset, length)
        if func == ND_CMD_SET_CONFIG_DATA:
            offset, length = struct.unpack_from("<II", payload, 0)
            return self._lsw(nvdimm, offset, length, payload[8:8 + length])
        raise Errno(errno.ENOTTY, f"_DSM function {func} is not emulated")


def _firmware(bus, nvdimm, func: int):
    """The platform function behind a _DSM call, if the topology gave it one."""
    if nvdimm is not None:
        smart = nvdimm.smart
        if smart is None:
            return None
        return {fw.ND_INTEL_SMART: smart.smart, fw.ND_INTEL_SMART_THRESHOLD: smart.threshold,
                fw.ND_INTEL_SMART_SET_THRESHOLD: smart.set_threshold, fw.ND_INTEL_SMART_INJECT: smart.inject,
                fw.ND_INTEL_ENABLE_LSS_STATUS: smart.lss, ND_INTEL_FW_GET_INFO: fw.fw_get_info}.get(func)
    firmware = bus.provider_data.fw
    if firmware is None:
        return None
    return {ND_CMD_ARS_CAP: firmware.ars_cap, ND_CMD_ARS_START: firmware.ars_start,
            ND_CMD_ARS_STATUS: firmware.ars_status, ND_CMD_CLEAR_ERROR: firmware.clear_error,
            fw.NFIT_CMD_TRANSLATE_SPA: lambda p: firmware.translate_spa(bus, p),
            fw.NFIT_CMD_ARS_INJECT_SET: lambda p: firmware.inject_set(p, lambda: fw.uc_error_notify(bus)),
            fw.NFIT_CMD_ARS_INJECT_CLEAR: firmware.inject_clear,
            fw.NFIT_CMD_ARS_INJECT_GET: firmware.inject_get}.get(func)


def _family(nvdimm) -> int | None:
    return nvdimm.spec.family if nvdimm.spec is not None else NVDIMM_FAMILY_INTEL


def _dsm_mask(nvdimm) -> int:
    if nvdimm.spec is None:
        return nvdimm.cmd_mask & 0x3FE
    return int(nvdimm.spec.dsm_mask)


def _bus_dsm_mask(bus) -> int:
    return int(bus.provider_data.spec.dsm_mask)


ACPI_NFIT_CTL = AcpiNfitCtl()
