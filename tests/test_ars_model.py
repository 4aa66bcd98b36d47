"""ARS, poison and SMART in the model alone (no FUSE, no root): deterministic
through the kernel's timer queue (Timers.settle jumps from deadline to deadline)."""

from __future__ import annotations

import os
import struct

from fakesys.kernel.base.timer import timers
from fakesys.kernel.nvdimm import ioctl
from fakesys.platform.machine import Machine
from fakesys.platform.topology import load

ARS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "ars.toml")


def boot():
    m = Machine(load(ARS))
    nd = m.kernel.nd.bus.devices
    return m, nd["ndbus0"], nd["region0"]


def show(dev, name):
    return dev.kobj.walk(name).read().decode()


def test_scrub_lifecycle_and_python_api():
    m, bus, region = boot()
    assert show(bus, "nfit/scrub") == "0+\n"
    assert show(region, "badblocks") == "8 2\n"              # the short ARS at registration
    timers(m.kernel).settle()
    assert show(bus, "nfit/scrub") == "1\n"
    bus.provider_data.fw.inject(region.start + 0x20000, 4096)         # the Python API: the platform finds poison
    assert show(region, "badblocks") == "8 2\n"              # unknown to the kernel until a scrub
    bus.kobj.walk("nfit/scrub").write(b"1\n")
    assert show(bus, "nfit/scrub") == "1+\n"
    timers(m.kernel).settle()
    assert show(bus, "nfit/scrub") == "2\n"
    assert show(region, "badblocks") == "8 2\n256 8\n"


def test_clear_error_and_badblocks_limits():
    m, bus, region = boot()
    timers(m.kernel).settle()
    start = region.start + (1 << 20)
    bus.provider_data.fw.inject(start, 700 * 512)                     # one range of 700 sectors
    bus.provider_data.scrubber.rescan()
    timers(m.kernel).settle()
    assert show(region, "badblocks") == "8 2\n2048 512\n2560 188\n"   # BB_MAX_LEN entries
    # nvdimm_clear_poison(): ARS_CAP for the unit, CLEAR_ERROR, then the bus list forgets
    assert ioctl.clear_poison(bus, start, 700 * 512) == 700 * 512
    assert show(region, "badblocks") == "8 2\n"
    assert list(bus.provider_data.fw.poison) == [(region.start + 0x1000, 1024)]


def test_smart_inject_payload():
    m, bus, region = boot()
    dimm = m.kernel.nd.bus.devices["nmem0"]
    inj = bytearray(struct.pack("<QBHBBBB", 0b1111, 1, 55 * 16, 1, 7, 1, 1) + bytes(4))
    assert dimm.smart.inject(inj) == (0, 0)
    out = bytearray(132)
    dimm.smart.smart(out)
    health, spares = out[12], out[13]
    mtemp, = struct.unpack_from("<H", out, 16)
    count, = struct.unpack_from("<I", out, 20)
    assert (health, spares, mtemp // 16, count, out[35]) == (4, 7, 55, 43, 1)
    assert dimm.smart.inject(bytearray(18)) == (-22, 0)         # the payload must be 19 bytes


def test_inject_media_error_api_finds_the_bus():
    from fakesys.kernel.acpi.nfit_fw import inject_media_error
    m, bus, region = boot()
    timers(m.kernel).settle()
    assert inject_media_error(m.kernel, region.start + 0x8000, 512, scrub=True) is bus
    timers(m.kernel).settle()
    assert show(region, "badblocks") == "8 2\n64 1\n"
    try:
        inject_media_error(m.kernel, 0x10, 512)
    except ValueError:
        pass
    else:
        raise AssertionError("an address outside every region must be refused")
