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
from fakesys.kernel.nvdimm.badrange import bus_badrange
from fakesys.kernel.nvdimm.bus import NvdimmBus
from fakesys.kernel.nvdimm.claim import Claim
from fakesys.kernel.nvdimm.dax_devs import Dax
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

U32_MAX = 0xFFFFFFFF
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
        return (length - 8) & U32_MAX
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
            in_len = (in_len + size) & U32_MAX
        out_env = bytearray(ND_CMD_MAX_ENVELOPE)
        out_len = 0
        for i in range(len(desc.outs)):
            size = out_size(is_dimm, nr, desc, i, in_env, out_env, 0)
            if size is None:
                raise Errno(errno.EFAULT, f"unknown output size, field {i}")
            copy = min(ND_CMD_MAX_ENVELOPE - out_len, size) if out_len < ND_CMD_MAX_ENVELOPE else 0
            if copy:
                out_env[out_len:out_len + copy] = read(in_len + out_len, copy)
            out_len = (out_len + size) & U32_MAX
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


def provider_ctl(bus):
    """nd_desc->ndctl of a bus: the command handler its provider registered
    it with (ACPI NFIT's, nfit_test's, ramdax's); None: the bus has none."""
    return bus.ndctl_handler
