"""ARS, media errors and SMART through the real ndctl, and bad ioctls.

tests/data/ars.toml: one ACPI NFIT bus with ARS (0.2 s per scrub), one
64 MiB region on an Intel-family DIMM with SMART, and a known media error
of two sectors at region offset 0x1000 (sector 8).  The nfit_test module
(devices/nfit_test.toml) is loaded with ``modprobe nfit_test`` inside the
fake.  Every check of badblocks reads region, namespace and block device
together: they must agree at every step.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from conftest import needs_ndctl, needs_root

pytestmark = [needs_root, needs_ndctl]

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
ARS = os.path.join(DATA, "ars.toml")


@pytest.fixture
def ars(fake_factory):
    fake = fake_factory(ARS)
    fake.run("ndctl wait-scrub", check=True)
    return fake


def badblocks(fake) -> tuple[str, str]:
    return fake.sys("bus/nd/devices/region0/badblocks"), fake.sys("block/pmem0/badblocks")


def media_errors(fake):
    ns = fake.json("ndctl list -N --media-errors")
    ns = ns[0] if isinstance(ns, list) else ns
    return [(b["offset"], b["length"]) for b in ns.get("badblocks", [])]


def test_declared_errors_show_from_boot_and_scrub_completes(fake_factory):
    fake = fake_factory(ARS)
    assert badblocks(fake) == ("8 2\n", "8 2\n")
    assert fake.sys("bus/nd/devices/ndbus0/commands") == "ars_cap ars_start ars_status clear_error cmd_call \n"
    assert fake.sys("bus/nd/devices/ndbus0/nfit/scrub") in ("0+\n", "1\n")
    fake.run("ndctl wait-scrub", check=True)
    assert fake.sys("bus/nd/devices/ndbus0/nfit/scrub") == "1\n"
    assert fake.json("ndctl list -B")[0]["scrub_state"] == "idle"
    region = fake.json("ndctl list -R --media-errors")[0]
    assert region["badblock_count"] == 2
    assert region["badblocks"] == [{"offset": 8, "length": 2, "dimms": ["nmem0"]}]   # via translate SPA
    assert media_errors(fake) == [(8, 2)]


def test_start_scrub_counts_and_rejects_bad_writes(ars):
    proc = ars.run("ndctl start-scrub && cat /sys/bus/nd/devices/ndbus0/nfit/scrub")
    assert proc.returncode == 0
    listing, count = proc.stdout.rsplit("]\n", 1)
    assert json.loads(listing + "]")[0]["scrub_state"] == "active" and count == "1+\n"
    ars.run("ndctl wait-scrub", check=True)
    assert ars.sys("bus/nd/devices/ndbus0/nfit/scrub") == "2\n"
    for value in ("2", "0", "x"):
        with pytest.raises(OSError) as e:
            ars.write("bus/nd/devices/ndbus0/nfit/scrub", value)
        assert e.value.errno == 22
    # writing 1 while a long scrub is already requested: EBUSY
    ars.write("bus/nd/devices/ndbus0/nfit/scrub", "1")
    with pytest.raises(OSError) as e:
        ars.write("bus/nd/devices/ndbus0/nfit/scrub", "1")
    assert e.value.errno == 16


def test_inject_status_scrub_clear(ars):
    proc = ars.run("ndctl inject-error -B 100 -n 2 namespace0.0")
    assert proc.returncode == 0, proc.stderr
    status = ars.json("ndctl inject-error --status namespace0.0")
    assert status == {"badblocks": [{"block": 8, "count": 2}, {"block": 100, "count": 2}]}
    # the injection's notification starts a short scrub; a full one finds both blocks
    ars.run("ndctl start-scrub; ndctl wait-scrub", check=True)
    assert badblocks(ars) == ("8 2\n100 2\n", "8 2\n100 2\n")
    assert media_errors(ars) == [(8, 2), (100, 2)]
    # uninject: the platform forgets, the kernel keeps its badblocks
    ars.run("ndctl inject-error --uninject -B 100 -n 2 namespace0.0", check=True)
    assert ars.json("ndctl inject-error --status namespace0.0") == {"badblocks": [{"block": 8, "count": 2}]}
    assert badblocks(ars) == ("8 2\n100 2\n", "8 2\n100 2\n")
    # clear-errors: ARS_CAP + CLEAR_ERROR per bad range, with the namespace disabled
    proc = ars.run("ndctl clear-errors namespace0.0")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["dev"] == "namespace0.0" and "badblocks" not in json.loads(proc.stdout)
    assert badblocks(ars) == ("", "")
    assert ars.json("ndctl inject-error --status namespace0.0") in (None, {}, {"badblocks": []})
    ars.run("ndctl start-scrub; ndctl wait-scrub", check=True)
    assert badblocks(ars) == ("", "")


def test_poison_reads_fail_and_writes_clear(ars):
    proc = ars.run("dd if=/dev/pmem0 of=/dev/null bs=512 skip=8 count=1")
    assert proc.returncode != 0 and "Input/output error" in proc.stderr
    assert ars.run("dd if=/dev/pmem0 of=/dev/null bs=512 skip=16 count=1").returncode == 0
    ars.run("dd if=/dev/zero of=/dev/pmem0 bs=512 seek=8 count=1 conv=notrunc", check=True)
    assert badblocks(ars) == ("9 1\n", "9 1\n")            # cleared in 256-byte units: one sector
    ars.run("dd if=/dev/zero of=/dev/pmem0 bs=512 seek=9 count=1 conv=notrunc", check=True)
    assert badblocks(ars) == ("", "")
    assert ars.run("dd if=/dev/pmem0 of=/dev/null bs=512 skip=8 count=2").returncode == 0


def test_fsdax_namespace_badblocks_follow_the_data_area(ars):
    ars.run("ndctl create-namespace -f -e namespace0.0 -m fsdax", check=True)
    ars.run("ndctl inject-error -B 4096 -n 1 namespace0.0; ndctl start-scrub; ndctl wait-scrub", check=True)
    region = ars.sys("bus/nd/devices/region0/badblocks")
    assert region.startswith("8 2\n") and len(region.splitlines()) == 2
    data_start = int(region.splitlines()[1].split()[0]) - 4096
    assert ars.sys("block/pmem0/badblocks") == "4096 1\n"
    assert data_start >= 0
    proc = ars.run("ndctl clear-errors namespace0.0")
    assert proc.returncode == 0, proc.stderr
    assert ars.sys("block/pmem0/badblocks") == ""
    assert ars.sys("bus/nd/devices/region0/badblocks") == "8 2\n"     # outside the data area


# -- SMART -----------------------------------------------------------------------------------

def health(fake, dimm="nmem0"):
    return next(d for d in fake.json("ndctl list -DH") if d["dev"] == dimm)["health"]


def test_smart_health_defaults(ars):
    h = health(ars)
    assert h == {
        "health_state": "non-critical", "temperature_celsius": 23.0,
        "controller_temperature_celsius": 25.0, "spares_percentage": 75,
        "alarm_temperature": True, "alarm_controller_temperature": False, "alarm_spares": True,
        "alarm_enabled_media_temperature": True, "temperature_threshold": 40.0,
        "alarm_enabled_ctrl_temperature": False, "alarm_enabled_spares": True,
        "spares_threshold": 5, "life_used_percentage": 5, "shutdown_state": "clean",
        "shutdown_count": 42}
    assert ars.sys("bus/nd/devices/nmem0/nfit/dirty_shutdown") == "42\n"


@pytest.mark.parametrize("args,expect", [
    ("-m 60", {"temperature_celsius": 60.0}),
    ("-s 3", {"spares_percentage": 3}),
    ("-f", {"health_state": "fatal"}),
    ("-U", {"shutdown_state": "dirty", "shutdown_count": 43}),
])
def test_inject_smart_fields(ars, args, expect):
    proc = ars.run(f"ndctl inject-smart {args} nmem0")
    assert proc.returncode == 0, proc.stderr
    h = health(ars)
    for key, value in expect.items():
        assert h[key] == value


def test_inject_smart_thresholds_and_uninject(ars):
    ars.run("ndctl inject-smart -M 50 -C 35 -S 9 --ctrl-temperature-alarm=on nmem0", check=True)
    h = health(ars)
    assert (h["temperature_threshold"], h["spares_threshold"]) == (50.0, 9)
    assert h["alarm_enabled_ctrl_temperature"] is True and h["controller_temperature_threshold"] == 35.0
    ars.run("ndctl inject-smart -m 70 -s 1 -f -U nmem0", check=True)
    assert health(ars)["alarm_enabled_media_temperature"] is True
    ars.run("ndctl inject-smart --media-temperature-uninject --spares-uninject -F "
            "--unsafe-shutdown-uninject nmem0", check=True)
    h = health(ars)
    assert (h["temperature_celsius"], h["spares_percentage"], h["health_state"],
            h["shutdown_state"]) == (23.0, 75, "non-critical", "clean")
    assert h["shutdown_count"] == 43
    # the Intel family has no controller-temperature injection: ndctl says so
    proc = ars.run("ndctl inject-smart -c 50 nmem0")
    assert proc.returncode != 0 and "ctrl_temperature" in proc.stderr


# -- bad ioctls ------------------------------------------------------------------------------

PROBE = r"""
import errno, fcntl, os, struct, sys
def io(fd, nr, buf):
    try:
        rc = fcntl.ioctl(fd, 0xC0004E00 | nr, buf)
        return rc
    except OSError as e:
        return errno.errorcode[e.errno]
dimm = os.open("/dev/nmem0", os.O_RDWR)
bus = os.open("/dev/ndctl0", os.O_RDWR)
out = {}
size = bytearray(12); io(dimm, 4, size); config = struct.unpack_from("<I", size, 4)[0]
out["get_beyond"] = io(dimm, 5, bytearray(struct.pack("<III", config, 8, 0) + bytes(8)))
out["get_straddle"] = io(dimm, 5, bytearray(struct.pack("<III", config - 8, 16, 0) + bytes(16)))
out["get_toolong"] = io(dimm, 5, bytearray(struct.pack("<III", 0, 8 << 20, 0) + bytes(16)))
out["set_busy"] = io(dimm, 6, bytearray(struct.pack("<II", 0, 64) + bytes(68)))
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
rc = libc.ioctl(dimm, ctypes.c_ulong(0xC0084E06), ctypes.c_void_p(16))
out["set_unmapped"] = errno.errorcode[ctypes.get_errno()] if rc < 0 else rc
out["set_toolong"] = io(dimm, 6, bytearray(struct.pack("<II", 0, 5 << 20) + bytes(8)))
for nr in (0, 7, 8, 11, 0x3f):
    out[f"dimm_nr{nr}"] = io(dimm, nr, bytearray(64))
    out[f"bus_nr{nr}"] = io(bus, nr, bytearray(64))
pkg = struct.pack("<QQII", 0, 99, 0, 8) + bytes(40) + bytes(8)
out["call_unknown_func"] = io(dimm, 10, bytearray(pkg))
out["call_bad_family"] = io(dimm, 10, bytearray(struct.pack("<QQII", 9, 1, 0, 8) + bytes(48)))
out["call_security"] = io(dimm, 10, bytearray(struct.pack("<QQII", 0, 10, 0, 8) + bytes(48)))
out["clear_misaligned"] = io(bus, 4, bytearray(struct.pack("<QQ", 0x100001000 + 8, 512) + bytes(16)))
start, sz = 0x100000000, 64 << 20
out["clear_whole_ns"] = io(bus, 4, bytearray(struct.pack("<QQ8xQ", start, sz, sz)))
os.write(os.open("/sys/bus/nd/devices/ndbus0/nfit/scrub", os.O_WRONLY), b"1")
out["ars_start_busy"] = io(bus, 2, bytearray(struct.pack("<QQHB5x", start, sz, 2, 0) + bytes(8)))
ro = os.open("/dev/ndctl0", os.O_RDONLY)
out["ars_start_ro"] = io(ro, 2, bytearray(32))
print(repr(out))
"""


def test_bad_ioctls_get_the_kernel_errno(ars):
    proc = ars.run(f"{sys.executable} -c '{PROBE}'")
    assert proc.returncode == 0, proc.stderr
    out = eval(proc.stdout)
    assert out["get_beyond"] == "EINVAL"             # QEMU-style _LSR: past the area
    assert out["get_straddle"] == "EINVAL"
    assert out["get_toolong"] == "EINVAL"            # > ND_IOCTL_MAX_BUFLEN
    assert out["set_busy"] == "EBUSY"                # region0 is enabled
    assert out["set_unmapped"] == "EFAULT"           # the envelope is not readable
    assert out["set_toolong"] == "EFAULT"            # its status field lies 5 MiB on: unreadable
    for nr in (0, 7, 8, 11, 0x3f):
        assert out[f"dimm_nr{nr}"] == "ENOTTY" and out[f"bus_nr{nr}"] == "ENOTTY"
    assert out["call_unknown_func"] == "ENOTTY"
    assert out["call_bad_family"] == "EINVAL"
    assert out["call_security"] == "ENOTTY"          # function 10 is not in this DIMM's dsm_mask
    assert out["clear_misaligned"] == "EINVAL"
    assert out["clear_whole_ns"] == "EBUSY"          # namespace0.0 is enabled
    assert out["ars_start_busy"] == "EBUSY"
    assert out["ars_start_ro"] == "EPERM"
    # the daemon is fine
    assert ars.json("ndctl list -R")[0]["dev"] == "region0"


# -- nfit_test ---------------------------------------------------------------------------------

@pytest.fixture
def nfit_test(fake_factory):
    fake = fake_factory(os.path.join(DATA, "empty-6.1.toml"))
    proc = fake.run("modprobe nfit_test")
    assert proc.returncode == 0, proc.stderr
    return fake


def test_modprobe_nfit_test_brings_up_both_buses(nfit_test):
    buses = {b["provider"]: b for b in nfit_test.json("ndctl list -B")}
    assert set(buses) == {"nfit_test.0", "nfit_test.1"}
    assert nfit_test.sys("module/nfit_test/initstate") == "live\n"
    assert nfit_test.sys("bus/nd/devices/nmem0/commands") == \
        "smart smart_thresh get_size get_data set_data cmd_call \n"
    assert nfit_test.sys("bus/nd/devices/region2/read_only") == "1\n"
    assert nfit_test.sys("bus/nd/devices/region3/devtype") == "nd_volatile\n"
    assert health(nfit_test, "nmem1")["shutdown_count"] == 42
    assert nfit_test.run("modprobe nd_pmem; modprobe -q libnvdimm").returncode == 0   # built in


def test_nfit_test_labels_and_modprobe_r(nfit_test):
    nfit_test.run("ndctl disable-region -b nfit_test.0 all", check=True)
    proc = nfit_test.run("ndctl init-labels -f -b nfit_test.0 all")
    assert (proc.returncode, proc.stderr) == (0, "initialized 4 nmems\n")
    nfit_test.run("ndctl enable-region -b nfit_test.0 all", check=True)
    assert nfit_test.sys("bus/nd/devices/region0/nstype") == "5\n"
    assert nfit_test.json("ndctl read-labels -j nmem0")[0]["index"][0]["nslot"] == 1020
    proc = nfit_test.run("modprobe -r nfit_test")
    assert (proc.returncode, proc.stderr) == (1, "modprobe: FATAL: Module nfit_test is in use.\n")
    nfit_test.run("ndctl disable-region all", check=True)
    assert nfit_test.run("modprobe -r nfit_test").returncode == 0
    assert nfit_test.json("ndctl list -B") is None


REMOVED = r"""
import errno, fcntl, os, subprocess
fd = os.open("/dev/nmem0", os.O_RDWR)
subprocess.run("ndctl disable-region all >/dev/null 2>&1; modprobe -r nfit_test", shell=True, check=True)
try:
    fcntl.ioctl(fd, 0xC00C4E04, bytearray(12))
    print("ok")
except OSError as e:
    print(errno.errorcode[e.errno])
"""


def test_ioctl_on_a_removed_dimm(nfit_test):
    proc = nfit_test.run(f"{sys.executable} -c '{REMOVED}'")
    assert proc.stdout.strip() == "ENXIO", proc.stderr
    assert nfit_test.run("modprobe nfit_test").returncode == 0
    assert len(nfit_test.json("ndctl list -D")) == 6


NFIT_TEST_PROBE = r"""
import errno, fcntl, os, struct
def io(path, nr, buf):
    fd = os.open(path, os.O_RDWR)
    try:
        return fcntl.ioctl(fd, 0xC0004E00 | nr, buf), buf
    except OSError as e:
        return errno.errorcode[e.errno], buf
    finally:
        os.close(fd)
out = {}
rc, b = io("/dev/nmem0", 4, bytearray(12)); out["size"] = (rc, list(struct.unpack("<III", b)))
rc, b = io("/dev/nmem0", 5, bytearray(struct.pack("<III", 0, 8, 0) + bytes(8)))
out["head"] = (rc, bytes(b[12:18]))
out["straddle"] = io("/dev/nmem0", 5, bytearray(struct.pack("<III", (128 << 10) - 8, 16, 0) + bytes(16)))[0]
out["beyond"] = io("/dev/nmem0", 5, bytearray(struct.pack("<III", 128 << 10, 8, 0) + bytes(8)))[0]
out["bus1_call"] = io("/dev/ndctl1", 10, bytearray(struct.pack("<QQII", 0, 9, 0, 8) + bytes(48)))[0]
rc, b = io("/dev/ndctl0", 1, bytearray(32)); out["ars_cap"] = (rc, list(struct.unpack_from("<III", b, 16)))
print(repr(out))
"""


def test_nfit_test_callback(nfit_test):
    proc = nfit_test.run(f"{sys.executable} -c '{NFIT_TEST_PROBE}'")
    assert proc.returncode == 0, proc.stderr
    out = eval(proc.stdout)
    assert out["size"] == (0, [0, 128 << 10, 4096])
    assert out["head"] == (0, b"label0")                 # the module's mark in each label area
    assert out["straddle"] == 8                          # nfit_test returns the unfilled bytes
    assert out["beyond"] == "EINVAL"
    assert out["bus1_call"] == "ENOTTY"                  # nfit_test.1 has no cmd_call
    assert out["ars_cap"] == (0, [3 << 16, 48 + 170 * 24, 256])
