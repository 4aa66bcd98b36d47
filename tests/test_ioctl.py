"""Unit tests of the nd ioctl model (fakesys.kernel.nvdimm.ioctl) and of the
kernel's char device number switch, with fake caller buffers, no daemon.

The machine is the golden QEMU one (devices/qemu-nvdimm.toml): two DIMMs
with blank 128 KiB label areas, max_xfer 4076, DIMM commands
get_size/get_data/set_data/cmd_call, _DSM mask 0x70, bus commands cmd_call.
"""

from __future__ import annotations

import errno
import os
import struct

import pytest

from fakesys.errors import Errno
from fakesys.kernel.base.core import device_del
from fakesys.kernel.base.dd import device_attach, device_release_driver
from fakesys.kernel.fs.char_dev import set_chrdev_numbers
from fakesys.kernel.nvdimm import ioctl as nd
from fakesys.platform.machine import Machine
from fakesys.sysfs.tree import Link
from fakesys.platform.topology import load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QEMU = os.path.join(ROOT, "devices", "qemu-nvdimm.toml")
KIB128 = 128 << 10
MAX_XFER = 4076


class Caller:
    """A caller's buffer: reads past its end fault like unmapped memory."""

    def __init__(self, data: bytes | int) -> None:
        self.mem = bytearray(data if isinstance(data, bytes) else bytes(data))
        self.reads: list[tuple[int, int]] = []

    def read(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        if offset < 0 or offset + length > len(self.mem):
            raise Errno(errno.EFAULT, "unmapped")
        return bytes(self.mem[offset:offset + length])

    def write(self, offset: int, data: bytes) -> None:
        if offset + len(data) > len(self.mem):
            raise Errno(errno.EFAULT, "unmapped")
        self.mem[offset:offset + len(data)] = data


def call(device, nr: int, caller: Caller, read_only: bool = False) -> int:
    return nd.nd_ioctl(device, nr, read_only, caller.read, caller.write)


def errno_of(device, nr: int, caller: Caller, read_only: bool = False) -> int:
    with pytest.raises(Errno) as e:
        call(device, nr, caller, read_only)
    return e.value.errno


@pytest.fixture
def machine():
    return Machine(load(QEMU))


@pytest.fixture
def nmem0(machine):
    return machine.kernel.nd.bus.devices["nmem0"]


@pytest.fixture
def ndctl0(machine):
    return machine.kernel.nd.bus.devices["ndbus0"].ndctl


def region_of(machine, dimm):
    return next(r for r in machine.kernel.nd.bus.devices.values()
                if getattr(r, "mappings", None) and r.mappings[0].nvdimm is dimm)


def disable_regions(machine, dimm) -> None:
    device_release_driver(region_of(machine, dimm))
    assert dimm.busy == 0


def get_data(offset: int, length: int, room: int | None = None) -> Caller:
    return Caller(struct.pack("<III", offset, length, 0) + bytes(length if room is None else room))


def set_data(offset: int, data: bytes, length: int | None = None) -> Caller:
    n = len(data) if length is None else length
    return Caller(struct.pack("<II", offset, n) + data + struct.pack("<I", 0xFFFFFFFF))


def pkg(family: int, func: int, payload: bytes, size_out: int, reserved: int = 0) -> Caller:
    head = struct.pack("<QQII9II", family, func, len(payload), size_out, reserved, *[0] * 8, 0)
    assert len(head) == nd.ND_CMD_PKG_SIZE
    return Caller(head + payload + bytes(size_out))


# -- the label commands ---------------------------------------------------------


def test_get_config_size(nmem0):
    c = Caller(12)
    assert call(nmem0, nd.ND_CMD_GET_CONFIG_SIZE, c) == 0
    assert struct.unpack("<III", c.mem) == (0, KIB128, MAX_XFER)


def test_only_commands_that_change_sysfs_revalidate_it(nmem0, ndctl0):
    # the bridge revalidates every cached attribute after a "dirty" command
    c = Caller(12)
    req = nd.prepare(nmem0, nd.ND_CMD_GET_CONFIG_SIZE, c.read)
    nd.dispatch(nmem0, req, False)
    assert not req.dirty                      # 4 on a DIMM, CLEAR_ERROR's number on a bus
    req = nd.prepare(nmem0, nd.ND_CMD_CALL, pkg(nd.NVDIMM_FAMILY_INTEL, 4, b"", 12).read)
    nd.dispatch(nmem0, req, False)
    assert req.dirty                          # a CALL may do anything


def test_read_only_check_is_by_bare_number(nmem0):
    # __nd_ioctl refuses ARS_START (2) and CLEAR_ERROR (4) on read-only files
    # without asking whether the file is a bus: on a DIMM those numbers are
    # SMART_THRESHOLD and GET_CONFIG_SIZE.  GET_CONFIG_DATA (5) is fine.
    assert errno_of(nmem0, nd.ND_CMD_GET_CONFIG_SIZE, Caller(12), read_only=True) == errno.EPERM
    nmem0.cmd_mask |= 1 << nd.ND_CMD_SMART_THRESHOLD
    assert errno_of(nmem0, nd.ND_CMD_SMART_THRESHOLD, Caller(12), read_only=True) == errno.EPERM
    assert call(nmem0, nd.ND_CMD_GET_CONFIG_DATA, get_data(0, 64), read_only=True) == 0


def test_get_config_data_reads_the_label_store(nmem0):
    nmem0.lsa.write(100, b"hello labels")
    c = get_data(96, MAX_XFER)
    assert call(nmem0, nd.ND_CMD_GET_CONFIG_DATA, c) == 0
    assert struct.unpack_from("<I", c.mem, 8)[0] == 0
    assert bytes(c.mem[12:12 + MAX_XFER]) == nmem0.lsa.read(96, MAX_XFER)
    assert bytes(c.mem[16:28]) == b"hello labels"


def test_get_config_data_last_bytes(nmem0):
    c = get_data(KIB128 - 16, 16)
    assert call(nmem0, nd.ND_CMD_GET_CONFIG_DATA, c) == 0


@pytest.mark.parametrize("offset,length", [
    (KIB128 - 8, 16),           # past the end of the area
    (KIB128, 1),
    (0, MAX_XFER + 1),          # longer than max_xfer
    (0, 0),                     # _LSR cannot build an empty field
    (0xFFFFFFF0, 0x20),         # offset + length wraps
])
def test_get_config_data_out_of_range_is_einval(nmem0, offset, length):
    assert errno_of(nmem0, nd.ND_CMD_GET_CONFIG_DATA, get_data(offset, length)) == errno.EINVAL


def test_get_config_data_short_caller_buffer_faults(nmem0):
    c = Caller(struct.pack("<III", 0, 4076, 0) + bytes(100))
    assert errno_of(nmem0, nd.ND_CMD_GET_CONFIG_DATA, c) == errno.EFAULT


def test_buffer_over_4mib_is_einval(nmem0):
    # the envelopes (first 256 bytes of each) must be readable, the rest not
    c = Caller(struct.pack("<III", 0, nd.ND_IOCTL_MAX_BUFLEN, 0) + bytes(252))
    assert errno_of(nmem0, nd.ND_CMD_GET_CONFIG_DATA, c) == errno.EINVAL
    # exactly 4 MiB in all passes the size check, then faults copying it in
    c = Caller(struct.pack("<III", 0, nd.ND_IOCTL_MAX_BUFLEN - 12, 0) + bytes(252))
    assert errno_of(nmem0, nd.ND_CMD_GET_CONFIG_DATA, c) == errno.EFAULT


def test_set_config_data_busy_while_region_enabled(machine, nmem0):
    assert nmem0.busy
    before = nmem0.lsa.read(0, 16)
    assert errno_of(nmem0, nd.ND_CMD_SET_CONFIG_DATA, set_data(0, b"x" * 16)) == errno.EBUSY
    assert nmem0.lsa.read(0, 16) == before


def test_set_config_data_writes_the_store_not_the_cache(machine, nmem0):
    disable_regions(machine, nmem0)
    cached = nmem0.ndd.labels.data
    c = set_data(256, b"A" * MAX_XFER)
    assert call(nmem0, nd.ND_CMD_SET_CONFIG_DATA, c) == 0
    assert struct.unpack_from("<I", c.mem, 8 + MAX_XFER)[0] == 0      # status
    assert nmem0.lsa.read(256, MAX_XFER) == b"A" * MAX_XFER
    assert nmem0.ndd.labels.data == cached                           # stale until re-probed
    device_release_driver(nmem0)
    device_attach(nmem0)
    assert nmem0.ndd.labels.data[256:256 + MAX_XFER] == b"A" * MAX_XFER


@pytest.mark.parametrize("offset,length", [(KIB128 - 8, 16), (0, MAX_XFER + 4)])
def test_set_config_data_out_of_range_is_firmware_status(machine, nmem0, offset, length):
    disable_regions(machine, nmem0)
    c = set_data(offset, b"B" * length)
    assert call(nmem0, nd.ND_CMD_SET_CONFIG_DATA, c) == 0
    assert struct.unpack_from("<I", c.mem, 8 + length)[0] == nd.FW_INVALID
    assert b"B" not in nmem0.lsa.read(0, KIB128)


def test_set_config_data_wrapped_length_writes_nothing(machine, nmem0):
    disable_regions(machine, nmem0)
    c = Caller(struct.pack("<II", 0, 0xFFFFFFFC) + bytes(300))
    assert call(nmem0, nd.ND_CMD_SET_CONFIG_DATA, c) == 0
    assert nmem0.lsa.read(0, KIB128) == bytes(KIB128)


def test_write_commands_on_read_only_files_are_eperm(machine, nmem0, ndctl0):
    disable_regions(machine, nmem0)
    assert errno_of(nmem0, nd.ND_CMD_SET_CONFIG_DATA, set_data(0, b"x"), read_only=True) == errno.EPERM
    assert errno_of(nmem0, nd.ND_CMD_CALL, pkg(0, 4, b"", 12), read_only=True) == errno.EPERM
    assert errno_of(ndctl0, nd.ND_CMD_CALL, pkg(0, 1, b"", 16), read_only=True) == errno.EPERM


def test_eperm_before_envelope_errors(nmem0):
    # the kernel refuses the write before it looks at the (unreadable) buffer
    c = Caller(struct.pack("<II", 0, 64))
    assert errno_of(nmem0, nd.ND_CMD_SET_CONFIG_DATA, c, read_only=True) == errno.EPERM
    assert errno_of(nmem0, nd.ND_CMD_SET_CONFIG_DATA, c) == errno.EFAULT


# -- what is not a command ---------------------------------------------------------------


@pytest.mark.parametrize("nr", [0, 7, 8, 11, 0x20, 0x3F])
def test_unknown_or_empty_commands_are_enotty(nmem0, ndctl0, nr):
    assert errno_of(nmem0, nr, Caller(64)) == errno.ENOTTY
    assert errno_of(ndctl0, nr, Caller(64)) == errno.ENOTTY


@pytest.mark.parametrize("nr", [nd.ND_CMD_SMART, nd.ND_CMD_SMART_THRESHOLD, nd.ND_CMD_DIMM_FLAGS,
                                nd.ND_CMD_VENDOR])
def test_dimm_commands_outside_cmd_mask_are_enotty(nmem0, nr):
    assert errno_of(nmem0, nr, Caller(512)) == errno.ENOTTY


@pytest.mark.parametrize("nr", [nd.ND_CMD_ARS_CAP, nd.ND_CMD_ARS_START, nd.ND_CMD_ARS_STATUS,
                                nd.ND_CMD_CLEAR_ERROR])
def test_bus_commands_outside_cmd_mask_are_enotty(ndctl0, nr):
    assert errno_of(ndctl0, nr, Caller(512)) == errno.ENOTTY


def test_enotty_before_envelope_errors(nmem0):
    huge = Caller(struct.pack("<III", 0, 0xFFFFFFF0, 0))
    assert errno_of(nmem0, nd.ND_CMD_VENDOR, huge) == errno.ENOTTY


def test_label_commands_are_dimm_commands(ndctl0):
    assert errno_of(ndctl0, nd.ND_CMD_GET_CONFIG_SIZE, Caller(12)) == errno.ENOTTY


def test_dimm_flags_when_in_the_mask(nmem0):
    nmem0.cmd_mask |= 1 << nd.ND_CMD_DIMM_FLAGS
    c = Caller(b"\xff" * 8)
    assert call(nmem0, nd.ND_CMD_DIMM_FLAGS, c) == 0
    assert struct.unpack("<II", c.mem) == (0, 0)


def test_gone_device_is_enxio(machine, nmem0):
    device_del(nmem0)
    assert errno_of(nmem0, nd.ND_CMD_GET_CONFIG_SIZE, Caller(12)) == errno.ENXIO


# -- ND_CMD_CALL ----------------------------------------------------------------------------


def test_call_get_size_through_the_dsm(nmem0):
    c = pkg(nd.NVDIMM_FAMILY_INTEL, 4, b"", 12)
    assert call(nmem0, nd.ND_CMD_CALL, c) == 0
    assert struct.unpack_from("<I", c.mem, 60)[0] == 12                 # nd_fw_size
    assert struct.unpack_from("<III", c.mem, 64) == (0, KIB128, MAX_XFER)


def test_call_get_data_past_the_end_is_status_only(nmem0):
    c = pkg(0, 5, struct.pack("<II", KIB128 - 4, 8), 12)
    assert call(nmem0, nd.ND_CMD_CALL, c) == 0
    assert struct.unpack_from("<I", c.mem, 60)[0] == 4
    assert struct.unpack_from("<I", c.mem, 72)[0] == nd.FW_INVALID


def test_call_set_data_busy(nmem0):
    c = pkg(0, 6, struct.pack("<II", 0, 4) + b"abcd", 4)
    assert errno_of(nmem0, nd.ND_CMD_CALL, c) == errno.EBUSY


def test_call_set_data(machine, nmem0):
    disable_regions(machine, nmem0)
    c = pkg(0, 6, struct.pack("<II", 8, 4) + b"abcd", 4)
    assert call(nmem0, nd.ND_CMD_CALL, c) == 0
    assert nmem0.lsa.read(8, 4) == b"abcd"


@pytest.mark.parametrize("family", [1, 4, 5, 6, 1 << 40])
def test_call_family_not_supported_is_einval(nmem0, family):
    assert errno_of(nmem0, nd.ND_CMD_CALL, pkg(family, 4, b"", 12)) == errno.EINVAL


def test_call_function_outside_dsm_mask_is_enotty(nmem0):
    assert errno_of(nmem0, nd.ND_CMD_CALL, pkg(0, 1, b"", 132)) == errno.ENOTTY   # SMART
    assert errno_of(nmem0, nd.ND_CMD_CALL, pkg(0, 40, b"", 4)) == errno.ENOTTY


def test_call_reserved_words_must_be_zero(nmem0):
    assert errno_of(nmem0, nd.ND_CMD_CALL, pkg(0, 4, b"", 12, reserved=1)) == errno.EINVAL


def test_call_unreadable_package_is_efault(nmem0):
    assert errno_of(nmem0, nd.ND_CMD_CALL, Caller(32)) == errno.EFAULT


def test_bus_call(ndctl0):
    assert errno_of(ndctl0, nd.ND_CMD_CALL, pkg(1, 1, b"", 16)) == errno.EINVAL   # INTEL bus family
    assert errno_of(ndctl0, nd.ND_CMD_CALL, pkg(2, 1, b"", 16)) == errno.EINVAL   # > BUS_FAMILY_MAX
    assert errno_of(ndctl0, nd.ND_CMD_CALL, pkg(0, 1, b"", 16)) == errno.ENOTTY   # dsm_mask 0


# -- envelope sizing ------------------------------------------------------------------------


def test_prepare_reads_like_the_kernel(nmem0):
    c = get_data(0, 300)
    req = nd.prepare(nmem0, nd.ND_CMD_GET_CONFIG_DATA, c.read)
    assert (req.in_len, req.out_len, req.error) == (8, 304, None)
    # header fields one by one, the first 256 bytes of the output envelope, then all
    assert c.reads == [(0, 4), (4, 4), (8, 4), (12, 252), (0, 312)]


def test_ars_status_output_size(ndctl0):
    desc = nd.cmd_desc(False, nd.ND_CMD_ARS_STATUS)
    out = struct.pack("<II", 0, 48 + 24)
    assert nd.out_size(False, nd.ND_CMD_ARS_STATUS, desc, 2, b"", out, 0) == 64
    assert nd.out_size(False, nd.ND_CMD_ARS_STATUS, desc, 2, b"", struct.pack("<II", 0, 3), 0) == 0
    assert nd.out_size(False, nd.ND_CMD_ARS_STATUS, desc, 2, b"", struct.pack("<II", 0, 4), 0) == 0
    assert nd.out_size(False, nd.ND_CMD_ARS_STATUS, desc, 2, b"", out, 68) == 68


# -- char device numbers --------------------------------------------------------------------


class FakeNumbers:
    def __init__(self) -> None:
        self.next = 40
        self.released: list[str] = []

    def claim(self, dev, name):
        if name != "dimmctl":
            return None
        self.next += 1
        return (136, self.next), f"pts/{self.next}"

    def release(self, dev):
        self.released.append(dev.name)


def read(machine, path: str) -> str:
    """A file's content or a link's target; ``nmemN``/``ndctlN`` name their device's directory."""
    head, _, rest = path.partition("/")
    devices = machine.kernel.nd.bus.devices
    dev = devices.get(head) or devices["ndbus0"].ndctl if head.startswith(("nmem", "ndctl")) else None
    node = (dev.kobj.walk(rest) if dev is not None else machine.tree.root.walk(path))
    return node.read().decode() if hasattr(node, "read") else node.readlink()


def test_default_numbers_are_the_61_ones(machine):
    assert read(machine, "nmem0/dev") == "245:0\n"
    assert read(machine, "ndctl0/dev") == "246:0\n"
    assert machine.tree.root.walk("sys/dev/char/245:1") is not None
    assert not isinstance(machine.tree.root.walk("dev/nmem0"), Link)


def test_installed_numbers_move_dev_uevent_links_and_nodes(machine):
    numbers = FakeNumbers()
    set_chrdev_numbers(machine.kernel, numbers)
    assert read(machine, "nmem0/dev") == "136:41\n"
    assert "MAJOR=136\nMINOR=41\n" in read(machine, "nmem0/uevent")
    assert machine.tree.root.walk("sys/dev/char/245:0") is None
    assert read(machine, "sys/dev/char/136:41").endswith("/ndbus0/nmem0")
    assert read(machine, "dev/nmem0") == "pts/41"
    assert read(machine, "ndctl0/dev") == "246:0\n"   # not claimed
    assert not isinstance(machine.tree.root.walk("dev/ndctl0"), Link)
    nmem1 = machine.kernel.nd.bus.devices["nmem1"]
    device_del(nmem1)
    assert numbers.released == ["nmem1"]
    assert machine.tree.root.walk("dev/nmem1") is None
    assert machine.tree.root.walk("sys/dev/char/136:42") is None
    set_chrdev_numbers(machine.kernel, None)
    assert read(machine, "nmem0/dev") == "245:0\n"
    assert not isinstance(machine.tree.root.walk("dev/nmem0"), Link)


# -- pty-backed numbers (the daemon's provider) ---------------------------------------------


def _session_and_tty(pid: int) -> tuple[int, int]:
    """The session id and controlling tty (tty_nr) of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[3]), int(fields[4])


@pytest.mark.skipif(not os.path.exists("/dev/ptmx"), reason="no /dev/ptmx")
def test_pty_numbers_claim_and_release(machine):
    from fakesys.dev.pty import PtyNumbers
    numbers = PtyNumbers({"dimmctl"})
    nmem0 = machine.kernel.nd.bus.devices["nmem0"]
    got = numbers.claim(nmem0, "dimmctl")
    assert numbers.claim(nmem0, "ndctl") is None
    (major, minor), target = got
    path = os.path.join("/dev", target)
    rdev = os.stat(path).st_rdev
    assert (os.major(rdev), os.minor(rdev)) == (major, minor)
    assert numbers.lookup(rdev) == (nmem0, "dimmctl")
    guard = numbers._by_dev[nmem0].guard
    assert _session_and_tty(guard) == (guard, rdev)    # leads its own session, the pty its tty
    numbers.release(nmem0)
    # still found, so that a file left open on the removed DIMM gets nd_ioctl's ENXIO
    assert numbers.lookup(rdev) == (nmem0, "dimmctl")
    assert not os.path.exists(f"/proc/{guard}")


@pytest.mark.skipif(not os.path.exists("/dev/ptmx"), reason="no /dev/ptmx")
def test_pty_numbers_batch_settles_every_guard(machine):
    """Claims in a batch fork their guards at once; at the batch's end each
    guard holds its pty as the controlling terminal of a session of its own."""
    from fakesys.dev.pty import PtyNumbers
    numbers = PtyNumbers({"dimmctl"})
    dimms = [machine.kernel.nd.bus.devices[f"nmem{i}"] for i in range(2)]
    try:
        with numbers.batch():
            claimed = [numbers.claim(dimm, "dimmctl") for dimm in dimms]
        for dimm, ((major, minor), _target) in zip(dimms, claimed):
            guard = numbers._by_dev[dimm].guard
            assert _session_and_tty(guard) == (guard, os.makedev(major, minor))
    finally:
        numbers.close()
