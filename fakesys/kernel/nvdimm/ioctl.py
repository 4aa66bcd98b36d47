"""ioctls on the nd character devices: ``/dev/ndctlN`` (bus) and ``/dev/nmemN`` (DIMM).

Counterpart of drivers/nvdimm/bus.c (``nd_ioctl``, ``__nd_ioctl``, the
command descriptor tables, ``nd_cmd_in_size``/``nd_cmd_out_size``,
``nd_cmd_clear_to_send``) and of the ACPI NFIT provider's ``ndctl``
callback (drivers/acpi/nfit/core.c ``acpi_nfit_ctl``) together with the
firmware QEMU puts behind it: the _LSI/_LSR/_LSW label methods and the
NVDIMM _DSM functions 4-6 (hw/acpi/nvdimm.c).

An ioctl is served in two steps, so that caller memory is never touched
while model state is (the daemon runs the model on the thread that also
serves FUSE, and a caller's buffer may be backed by anything):

1. :func:`prepare` reads only the caller's buffer, through a
   ``read(offset, length) -> bytes`` callback that raises ``Errno(EFAULT)``
   for memory it cannot read.  It sizes the envelope exactly as
   __nd_ioctl does (the sizes of some fields are read from earlier fields)
   and copies the whole buffer in.  What fails here is *recorded*, not
   raised: the kernel reports some model-dependent errors (ENOTTY, EPERM)
   before it looks at the envelope.
2. :func:`dispatch` touches only the model.  It applies the dispatch rules
   in the kernel's order, runs the command and returns the ioctl's value
   (>= 0); errors are raised as ``Errno``.  The buffer to copy back to the
   caller, whole, is then ``request.buf``.

:func:`nd_ioctl` chains both and the copy back, for callers that may touch
memory and model together (unit tests).

Dispatch rules (kernel order):

* a CALL first reads its 64-byte ``nd_cmd_pkg`` (EFAULT) and checks the
  family against NVDIMM_FAMILY_MAX / NVDIMM_BUS_FAMILY_MAX and the
  provider's family masks (EINVAL);
* no descriptor, an empty one (7, 8 and the unused bus numbers), nr > 10
  or a bit missing from the DIMM's / bus's ``cmd_mask``: ENOTTY;
* a write command (VENDOR, SET_CONFIG_DATA, ARS_START, CLEAR_ERROR, CALL)
  on a file opened O_RDONLY: EPERM;
* envelope: a field of unknown input size is ENXIO, of unknown output size
  EFAULT, more than ND_IOCTL_MAX_BUFLEN (4 MiB) in all EINVAL, unreadable
  memory EFAULT.  Sizes add up in 32 bits, as in the kernel;
* SET_CONFIG_DATA (also as a CALL whose function is 6) while an enabled
  region uses the DIMM (``Nvdimm.busy``): EBUSY;
* then the provider.  For QEMU's NFIT DIMMs: GET_CONFIG_SIZE answers
  {0, config_size, max_xfer}; a GET_CONFIG_DATA past the end of the area,
  longer than max_xfer or of length 0 fails with EINVAL (QEMU's _LSR
  then faults building its reply, so acpi_nfit_ctl gets no object); the
  same SET_CONFIG_DATA returns 0 with firmware status 3 (_LSW returns the
  status) and writes nothing.  The ioctl returns 0 when the output filled
  the buffer, else the number of bytes left unfilled.

ARS, error injection and SMART (kernel/acpi/nfit_fw.py) answer when the
topology gives a bus the ARS commands (or media errors) and a DIMM Intel
SMART (``smart = true`` or function 1 in its ``dsm_mask``); the nfit_test
buses use the module's own callback (kernel/acpi/nfit_test.py).  After a
CLEAR_ERROR that the firmware accepted, the kernel forgets the range
(nvdimm_account_cleared_poison).  VENDOR is not emulated (ENOTTY).
DIMM_FLAGS (and CALL function 3) answers {status 0, flags 0} on QEMU
DIMMs.  The kernel's own label updates go through label.py, not through
here; as in the kernel, a SET_CONFIG_DATA does not refresh the DIMM
driver's cached copy (``Nvdimm.ndd``) until the DIMM is re-probed.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field
from typing import Callable

from fakesys.errors import Errno
from fakesys.kernel.nvdimm.bus import NvdimmBus
from fakesys.kernel.nvdimm.dimm import Nvdimm
from fakesys.kernel.uapi.ndctl import (  # noqa: F401  (the ABI, re-exported to callers)
    ND_CMD_ARS_CAP, ND_CMD_ARS_START, ND_CMD_ARS_STATUS, ND_CMD_CALL, ND_CMD_CLEAR_ERROR,
    ND_CMD_DIMM_FLAGS, ND_CMD_GET_CONFIG_DATA, ND_CMD_GET_CONFIG_SIZE, ND_CMD_IMPLEMENTED,
    ND_CMD_MAX_ENVELOPE, ND_CMD_PKG_SIZE, ND_CMD_SET_CONFIG_DATA, ND_CMD_SMART,
    ND_CMD_SMART_THRESHOLD, ND_CMD_VENDOR, ND_CMD_VENDOR_EFFECT_LOG, ND_CMD_VENDOR_EFFECT_LOG_SIZE,
    ND_IOCTL, ND_IOCTL_MAX_BUFLEN, NVDIMM_BUS_FAMILY_MAX, NVDIMM_BUS_FAMILY_NFIT,
    NVDIMM_CMD_MAX, NVDIMM_FAMILY_INTEL, NVDIMM_FAMILY_MAX,
)

# firmware status words (ACPI / QEMU NVDIMM _DSM)
FW_SUCCESS = 0
FW_INVALID = 3                  # "invalid input parameters"

WRITE_CMDS = frozenset({ND_CMD_VENDOR, ND_CMD_SET_CONFIG_DATA, ND_CMD_ARS_START,
                        ND_CMD_CLEAR_ERROR, ND_CMD_CALL})

_U32 = 0xFFFFFFFF
VAR = None  # a field whose size is read from the buffer

Read = Callable[[int, int], bytes]
Write = Callable[[int, bytes], None]


@dataclass(frozen=True)
class CmdDesc:
    """struct nd_cmd_desc: field sizes of the input and output envelopes."""

    ins: tuple[int | None, ...] = ()
    outs: tuple[int | None, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.ins and not self.outs


_CALL = CmdDesc((ND_CMD_PKG_SIZE, VAR), (VAR,))

# __nd_cmd_dimm_descs[] / __nd_cmd_bus_descs[]: index = command number
DIMM_DESCS: tuple[CmdDesc, ...] = (
    CmdDesc(),                          # 0 implemented
    CmdDesc((), (4, 128)),              # 1 smart
    CmdDesc((), (4, 8)),                # 2 smart_thresh
    CmdDesc((), (4, 4)),                # 3 flags
    CmdDesc((), (4, 4, 4)),             # 4 get_size
    CmdDesc((4, 4), (4, VAR)),          # 5 get_data
    CmdDesc((4, 4, VAR), (4,)),         # 6 set_data
    CmdDesc(),                          # 7 effect_size (name only)
    CmdDesc(),                          # 8 effect_log (name only)
    CmdDesc((4, 4, VAR), (4, 4, VAR)),  # 9 vendor
    _CALL,                              # 10 call
)
BUS_DESCS: tuple[CmdDesc, ...] = (
    CmdDesc(),                              # 0 implemented
    CmdDesc((8, 8), (4, 4, 4, 4)),          # 1 ars_cap
    CmdDesc((8, 8, 2, 1, 5), (4, 4)),       # 2 ars_start
    CmdDesc((), (4, 4, VAR)),               # 3 ars_status
    CmdDesc((8, 8), (4, 4, 8)),             # 4 clear_error
    CmdDesc(), CmdDesc(), CmdDesc(), CmdDesc(), CmdDesc(),
    _CALL,                                  # 10 call
)


def cmd_desc(is_dimm: bool, nr: int) -> CmdDesc | None:
    """nd_cmd_dimm_desc() / nd_cmd_bus_desc()."""
    table = DIMM_DESCS if is_dimm else BUS_DESCS
    return table[nr] if 0 <= nr < len(table) else None


def _u32(buf: bytes | bytearray, index: int) -> int:
    """The index-th u32 of a buffer (0 past its end, like a zeroed envelope)."""
    off = 4 * index
    if off + 4 > len(buf):
        return 0
    return struct.unpack_from("<I", buf, off)[0]


def in_size(is_dimm: bool, nr: int, desc: CmdDesc, idx: int, env: bytes | bytearray) -> int | None:
    """nd_cmd_in_size(): None where the kernel answers UINT_MAX (unknown)."""
    if idx >= len(desc.ins):
        return None
    if desc.ins[idx] is not VAR:
        return desc.ins[idx]
    if is_dimm and nr in (ND_CMD_SET_CONFIG_DATA, ND_CMD_VENDOR) and idx == 2:
        return _u32(env, 1)             # hdr->in_length
    if nr == ND_CMD_CALL:
        return _u32(env, 4)             # pkg->nd_size_in
    return None


def out_size(is_dimm: bool, nr: int, desc: CmdDesc, idx: int, in_field: bytes | bytearray,
             out_field: bytes | bytearray, remainder: int) -> int | None:
    """nd_cmd_out_size(): None where the kernel answers UINT_MAX (unknown)."""
    if idx >= len(desc.outs):
        return None
    if desc.outs[idx] is not VAR:
        return desc.outs[idx]
    if is_dimm and nr == ND_CMD_GET_CONFIG_DATA and idx == 1:
        return _u32(in_field, 1)        # in_length
    if is_dimm and nr == ND_CMD_VENDOR and idx == 2:
        return _u32(out_field, 1)       # out_length
    if not is_dimm and nr == ND_CMD_ARS_STATUS and idx == 2:
        length = _u32(out_field, 1)     # out_length, status included (ACPI 6.1)
        if length < 4:
            return 0
        if length - 4 == remainder:
            return remainder
        return (length - 8) & _U32
    if nr == ND_CMD_CALL:
        return _u32(in_field, 5)        # pkg->nd_size_out
    return None


@dataclass
class Request:
    """One ioctl after :func:`prepare`: the caller's bytes and what failed reading them."""

    is_dimm: bool
    nr: int
    pkg: bytes | None = None        # the nd_cmd_pkg a CALL starts with
    pkg_error: int | None = None    # errno of reading it
    in_len: int = 0
    out_len: int = 0
    error: int | None = None        # errno of the envelope stage
    buf: bytearray = field(default_factory=bytearray)
    dirty: bool = False             # the provider ran: sysfs may show something new


def is_dimm_node(device) -> bool:
    """Whether ``device`` is a DIMM (nmemN) rather than a bus (ndctlN / ndbusN)."""
    return isinstance(device, Nvdimm)


def prepare(device, nr: int, read: Read) -> Request:
    """Step 1: size the envelope and copy the caller's buffer (no model state)."""
    is_dimm = is_dimm_node(device)
    req = Request(is_dimm, nr)
    if nr == ND_CMD_CALL:
        try:
            req.pkg = bytes(read(0, ND_CMD_PKG_SIZE))
        except Errno as e:
            req.pkg_error = e.errno
            return req
    desc = cmd_desc(is_dimm, nr)
    if desc is None or desc.empty:
        return req                      # dispatch() answers ENOTTY
    try:
        in_env = bytearray(ND_CMD_MAX_ENVELOPE)
        in_len = 0
        for i in range(len(desc.ins)):
            size = in_size(is_dimm, nr, desc, i, in_env)
            if size is None:
                raise Errno(errno.ENXIO, f"unknown input size, field {i}")
            copy = min(ND_CMD_MAX_ENVELOPE - in_len, size) if in_len < ND_CMD_MAX_ENVELOPE else 0
            if copy:
                in_env[in_len:in_len + copy] = read(in_len, copy)
            in_len = (in_len + size) & _U32
        out_env = bytearray(ND_CMD_MAX_ENVELOPE)
        out_len = 0
        for i in range(len(desc.outs)):
            size = out_size(is_dimm, nr, desc, i, in_env, out_env, 0)
            if size is None:
                raise Errno(errno.EFAULT, f"unknown output size, field {i}")
            copy = min(ND_CMD_MAX_ENVELOPE - out_len, size) if out_len < ND_CMD_MAX_ENVELOPE else 0
            if copy:
                out_env[out_len:out_len + copy] = read(in_len + out_len, copy)
            out_len = (out_len + size) & _U32
        req.in_len, req.out_len = in_len, out_len
        buf_len = in_len + out_len
        if buf_len > ND_IOCTL_MAX_BUFLEN:
            raise Errno(errno.EINVAL, f"buffer of {buf_len} bytes > ND_IOCTL_MAX_BUFLEN")
        req.buf = bytearray(read(0, buf_len)) if buf_len else bytearray()
    except Errno as e:
        req.error = e.errno
    return req


def _target(device):
    """nd_ioctl(): the bus and (for nmemN) the DIMM an open node refers to."""
    if not getattr(device, "registered", False):
        raise Errno(errno.ENXIO, f"{device} is gone")
    if isinstance(device, Nvdimm):
        return device.nvdimm_bus, device
    bus = device if isinstance(device, NvdimmBus) else getattr(device, "nvdimm_bus", None)
    if bus is None or not bus.registered:
        raise Errno(errno.ENXIO, f"{device} has no bus")
    return bus, None


def dispatch(device, req: Request, read_only: bool) -> int:
    """Step 2: __nd_ioctl()'s checks in order, then the provider; returns the ioctl's value."""
    bus, nvdimm = _target(device)
    if (nvdimm is not None) != req.is_dimm:
        raise Errno(errno.ENXIO, "request prepared for another kind of device")
    nr = req.nr
    ctl = provider_ctl(bus)
    if nr == ND_CMD_CALL:
        if req.pkg_error is not None:
            raise Errno(req.pkg_error, "reading nd_cmd_pkg")
        assert req.pkg is not None
        family = struct.unpack_from("<Q", req.pkg, 0)[0]
        if nvdimm is not None:
            limit = NVDIMM_FAMILY_MAX
            mask = ctl.dimm_family_mask(bus) if ctl else 0
        else:
            limit = NVDIMM_BUS_FAMILY_MAX
            mask = ctl.bus_family_mask(bus) if ctl else 0
        if family > limit or not mask >> family & 1:
            raise Errno(errno.EINVAL, f"command family {family} not supported")
    desc = cmd_desc(nvdimm is not None, nr)
    cmd_mask = nvdimm.cmd_mask if nvdimm is not None else bus.cmd_mask
    if desc is None or desc.empty or nr > ND_CMD_CALL or not cmd_mask >> nr & 1:
        raise Errno(errno.ENOTTY, f"command {nr} not supported")
    if read_only and nr in WRITE_CMDS:
        raise Errno(errno.EPERM, f"command {nr} on a read-only file")
    if req.error is not None:
        raise Errno(req.error, "envelope")
    func = nr
    if nr == ND_CMD_CALL:
        assert req.pkg is not None
        func = struct.unpack_from("<Q", req.pkg, 8)[0]
    clear_to_send(bus, nvdimm, func, req.buf, ctl)
    if ctl is None:
        raise Errno(errno.ENOTTY, f"{bus.name} has no command handler")
    rc = ctl.ctl(bus, nvdimm, nr, req.buf)
    if nvdimm is None and nr == ND_CMD_CLEAR_ERROR and len(req.buf) >= 32:
        address, status, cleared = struct.unpack_from("<Q8xI4xQ", req.buf, 0)
        if status & 0xFFFF == 0:
            account_cleared_poison(bus, address, cleared)
    # the commands whose effect sysfs shows (scrub state, badblocks); the
    # bus numbers 2 and 4 are SMART_THRESHOLD and GET_CONFIG_SIZE on a DIMM
    req.dirty = nr == ND_CMD_CALL or (nvdimm is None
                                      and nr in (ND_CMD_ARS_START, ND_CMD_CLEAR_ERROR))
    return rc


def clear_to_send(bus, nvdimm, func: int, buf: bytes | bytearray = b"", ctl=None) -> None:
    """nd_cmd_clear_to_send().

    As in the kernel, ``func`` is the CALL's function number for a CALL and
    the provider's hook and the checks below see only that number: a bus
    CALL of function 2 is held back like ARS_START while the kernel scrubs,
    one of function 4 is checked like CLEAR_ERROR (its buffer read as an
    nd_cmd_clear_error), one of function 6 on a DIMM like SET_CONFIG_DATA.
    """
    hook = getattr(ctl, "clear_to_send", None)
    if hook is not None:
        hook(bus, nvdimm, func, buf)
    if nvdimm is None and func == ND_CMD_CLEAR_ERROR:
        forget_poison_check(bus, buf)
    if nvdimm is None or func != ND_CMD_SET_CONFIG_DATA:
        return
    if nvdimm.busy:
        raise Errno(errno.EBUSY, f"{nvdimm.name} is in use by an enabled region")


def forget_poison_check(bus, buf: bytes | bytearray) -> None:
    """nd_ns_forget_poison_check(): EBUSY if the range to clear covers an
    enabled namespace whole (the pmem driver must clear its own poison).
    The range ends at address + cleared - 1, ``cleared`` as the caller passed it."""
    if len(buf) < 32:
        return
    address, cleared = struct.unpack_from("<Q16xQ", buf, 0)
    end = (address + cleared - 1) & ((1 << 64) - 1)
    from fakesys.kernel.nvdimm.claim import Claim
    from fakesys.kernel.nvdimm.dax_devs import Dax
    for region in bus.regions():
        for dev in region.children:
            if isinstance(dev, Dax) or dev.driver is None:
                continue
            ns = dev.ndns if isinstance(dev, Claim) else dev
            if ns is None or not hasattr(ns, "res_start"):
                continue
            pstart, pend = ns.res_start, ns.res_start + ns.res_size - 1
            if pstart >= address and pend <= end:
                raise Errno(errno.EBUSY, f"{ns.name} is enabled: clear its poison through the pmem driver")


def account_cleared_poison(bus, phys: int, cleared: int) -> None:
    """nvdimm_account_cleared_poison(): forget what the firmware cleared."""
    if cleared > 0:
        from fakesys.kernel.nvdimm.badrange import bus_badrange
        bus_badrange(bus).forget(phys, cleared)


def clear_poison(bus, phys: int, length: int) -> int:
    """nvdimm_clear_poison(): ARS_CAP for the clear unit, then CLEAR_ERROR of
    the whole units inside [phys, phys+length); returns the bytes cleared."""
    ctl = provider_ctl(bus)
    if ctl is None or not bus.cmd_mask >> ND_CMD_ARS_CAP & 1 or not bus.cmd_mask >> ND_CMD_CLEAR_ERROR & 1:
        return 0
    cap = bytearray(struct.pack("<QQ", phys, length) + bytes(16))
    try:
        if ctl.ctl(bus, None, ND_CMD_ARS_CAP, cap) < 0:
            return 0
    except Errno:
        return 0
    unit = struct.unpack_from("<I", cap, 24)[0]
    if not unit:
        return 0
    start = -(-phys // unit) * unit
    end = (phys + length) // unit * unit
    if end <= start:
        return 0
    clr = bytearray(struct.pack("<QQ", start, end - start) + bytes(16))
    try:
        if ctl.ctl(bus, None, ND_CMD_CLEAR_ERROR, clr) < 0:
            return 0
    except Errno:
        return 0
    cleared = struct.unpack_from("<Q", clr, 24)[0]
    account_cleared_poison(bus, start, cleared)
    return cleared


def nd_ioctl(device, nr: int, read_only: bool, read: Read, write: Write) -> int:
    """One whole ioctl: prepare, dispatch, copy the buffer back (copy_to_user)."""
    req = prepare(device, nr, read)
    rc = dispatch(device, req, read_only)
    if req.buf:
        write(0, bytes(req.buf))
    return rc


# ---------------------------------------------------------------------------
# provider: ACPI NFIT (acpi_nfit_ctl) over QEMU's NVDIMM firmware


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
        from fakesys.kernel.acpi.nfit_fw import acpi_nfit_clear_to_send
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
            in_len = (in_len + (in_size(is_dimm, nr, desc, i, buf) or 0)) & _U32
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
            size = _U32 if size is None else size
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
        if offset + length > _U32:
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
    from fakesys.kernel.acpi import nfit_fw as fw
    if nvdimm is not None:
        smart = getattr(nvdimm, "smart", None)
        if smart is None:
            return None
        return {fw.ND_INTEL_SMART: smart.smart, fw.ND_INTEL_SMART_THRESHOLD: smart.threshold,
                fw.ND_INTEL_SMART_SET_THRESHOLD: smart.set_threshold, fw.ND_INTEL_SMART_INJECT: smart.inject,
                fw.ND_INTEL_ENABLE_LSS_STATUS: smart.lss, fw.ND_INTEL_FW_GET_INFO: fw.fw_get_info}.get(func)
    firmware = getattr(getattr(bus, "nfit", None), "fw", None)
    if firmware is None:
        return None
    return {ND_CMD_ARS_CAP: firmware.ars_cap, ND_CMD_ARS_START: firmware.ars_start,
            ND_CMD_ARS_STATUS: firmware.ars_status, ND_CMD_CLEAR_ERROR: firmware.clear_error,
            fw.NFIT_CMD_TRANSLATE_SPA: lambda p: firmware.translate_spa(bus, p),
            fw.NFIT_CMD_ARS_INJECT_SET: lambda p: firmware.inject_set(p, lambda: fw.uc_error_notify(bus)),
            fw.NFIT_CMD_ARS_INJECT_CLEAR: firmware.inject_clear,
            fw.NFIT_CMD_ARS_INJECT_GET: firmware.inject_get}.get(func)


def _family(nvdimm) -> int | None:
    spec = getattr(nvdimm, "spec", None)
    return getattr(spec, "family", NVDIMM_FAMILY_INTEL)


def _dsm_mask(nvdimm) -> int:
    spec = getattr(nvdimm, "spec", None)
    if spec is None:
        return nvdimm.cmd_mask & 0x3FE
    return int(getattr(spec, "dsm_mask", 0))


def _bus_dsm_mask(bus) -> int:
    spec = getattr(bus, "spec", None) or getattr(getattr(bus, "nfit", None), "spec", None)
    return int(getattr(spec, "dsm_mask", 0))


_NFIT = AcpiNfitCtl()


def provider_ctl(bus) -> AcpiNfitCtl | None:
    """nd_desc->ndctl of a bus: ACPI NFIT's, or the handler a provider set
    on its bus (``ndctl_handler``, e.g. ramdax's); None: the bus has none."""
    handler = getattr(bus, "ndctl_handler", None)
    if handler is not None:
        return handler
    return _NFIT if getattr(bus, "provider", None) == "ACPI.NFIT" else None
