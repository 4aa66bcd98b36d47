"""RAMDAX (6.19): label-backed namespaces on RAM carve-outs.

``devices/ramdax.toml`` has two 1 GiB ``memmap=`` ranges meant for
ramdax.  nd_e820 binds them at boot; the rehearsal (unbind e820_pmem, set
``driver_override``, bind ramdax) turns each range into one DIMM, whose
label area is the last 128 KiB of the range, and one region over the
whole range.  The in-process tests check the model (sysfs writes and
ioctls as the kernel sees them); the others drive the real ndctl.
"""

from __future__ import annotations

import errno
import os
import struct
import sys
import uuid

import pytest

from conftest import needs_ndctl, needs_root
from fakesys.errors import Errno
from fakesys.kernel.nvdimm import ioctl as nd
from fakesys.platform.machine import Machine
from fakesys.platform.topology import load, parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_model import exists, read, resolve, write  # noqa: E402
from test_model import refused as refused_in_process  # noqa: E402
from test_platform_pmem import OF_TOPOLOGY  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAMDAX = os.path.join(ROOT, "devices", "ramdax.toml")
MiB = 1 << 20
GiB = 1 << 30
KiB128 = 128 << 10
REHEARSAL = ("echo e820_pmem > /sys/bus/platform/drivers/e820_pmem/unbind && "
             "echo ramdax > /sys/bus/platform/devices/e820_pmem/driver_override && "
             "echo e820_pmem > /sys/bus/platform/drivers/ramdax/bind")
DEV = "devices/platform/e820_pmem"


def rehearse(m: Machine) -> None:
    write(m, "bus/platform/drivers/e820_pmem/unbind", "e820_pmem\n")
    write(m, f"{DEV}/driver_override", "ramdax\n")
    write(m, "bus/platform/drivers/ramdax/bind", "e820_pmem\n")


@pytest.fixture
def machine(tmp_path):
    return Machine(load(RAMDAX), str(tmp_path / "state"))


# ---------------------------------------------------------------- the model

def test_ramdax_waits_for_driver_override(machine):
    m = machine
    assert read(m, "bus/nd/devices/ndbus0/provider") == "e820\n"
    assert exists(m, "bus/platform/drivers/ramdax/bind")
    assert os.path.basename(resolve(m, "bus/platform/drivers/ramdax/module").path()) == "ramdax"
    # no id table, no OF table: ramdax matches nothing by itself
    assert refused_in_process(m, "bus/platform/drivers/ramdax/bind", "e820_pmem\n") == errno.ENODEV
    write(m, f"{DEV}/driver_override", "ramdax\n")
    # the override does not unbind e820_pmem: the device is busy
    assert refused_in_process(m, "bus/platform/drivers/ramdax/bind", "e820_pmem\n") == errno.EBUSY
    assert read(m, "bus/nd/devices/ndbus0/provider") == "e820\n"
    write(m, "bus/platform/drivers/e820_pmem/unbind", "e820_pmem\n")
    assert not exists(m, "bus/nd/devices/ndbus0")
    # e820_pmem may not take it back while the override names ramdax
    assert refused_in_process(m, "bus/platform/drivers/e820_pmem/bind", "e820_pmem\n") == errno.ENODEV
    write(m, "bus/platform/drivers_probe", "e820_pmem\n")     # ramdax matches now
    assert read(m, "bus/nd/devices/ndbus0/provider") == "ramdax\n"
    assert read(m, f"{DEV}/uevent") == "DRIVER=ramdax\nMODALIAS=platform:e820_pmem\n"


def test_ramdax_devices(machine):
    m = machine
    rehearse(m)
    assert read(m, "bus/nd/devices/ndbus0/commands") == "\n"
    for n in (0, 1):
        dimm = f"bus/nd/devices/nmem{n}"
        assert read(m, f"{dimm}/commands") == "get_size get_data set_data \n"
        assert read(m, f"{dimm}/flags") == "label \n"
        assert read(m, f"{dimm}/available_slots") == "509\n"     # blank: 256-byte labels, 510 slots
        assert not exists(m, f"{dimm}/nfit")
        region = f"bus/nd/devices/region{n}"
        assert read(m, f"{region}/size") == f"{GiB}\n"
        assert read(m, f"{region}/mapping0") == f"nmem{n},0,{GiB - KiB128},0\n"
        assert read(m, f"{region}/set_cookie") == "0xcafebeefcafebeef\n"
        assert read(m, f"{region}/nstype") == "5\n"
        assert read(m, f"{region}/available_size") == f"{1008 * MiB}\n"
        assert read(m, f"{region}/max_available_extent") == f"{1008 * MiB}\n"
        assert read(m, f"{region}/align") == "0x1000000\n"
        assert resolve(m, f"{region}/deep_flush").mode == 0o444
        assert read(m, f"{region}/deep_flush") == "0\n"
        assert not exists(m, f"{region}/persistence_domain")
        assert read(m, f"{region}/namespace{n}.0/devtype") == "nd_namespace_pmem\n"
    assert read(m, "bus/nd/devices/region1/resource") == "0x180000000\n"
    # unbinding ramdax takes the whole bus down; the ids come back on rebind
    write(m, "bus/platform/drivers/ramdax/unbind", "e820_pmem\n")
    assert not exists(m, "bus/nd/devices/nmem0")
    write(m, "bus/platform/drivers/ramdax/bind", "e820_pmem\n")
    assert read(m, "bus/nd/devices/region0/mapping0") == f"nmem0,0,{GiB - KiB128},0\n"


def test_ramdax_label_commands(machine):
    m = machine
    rehearse(m)
    nmem0 = m.kernel.nd.bus.devices["nmem0"]
    ndbus0 = m.kernel.nd.bus.devices["ndbus0"]

    def ioctl(device, nr, buf: bytes, read_only=False):
        mem = bytearray(buf)
        rc = nd.nd_ioctl(device, nr, read_only, lambda o, n: bytes(mem[o:o + n]),
                         lambda o, d: mem.__setitem__(slice(o, o + len(d)), d))
        return rc, bytes(mem)

    assert ioctl(nmem0, 4, bytes(12)) == (0, struct.pack("<III", 0, KiB128, 8))
    store = m.kernel.nd.bus.devices["region0"].desc.mappings[0].nvdimm.lsa
    store.write(KiB128 - 8, b"lastword")
    rc, out = ioctl(nmem0, 5, struct.pack("<III", KiB128 - 8, 8, 0) + bytes(8))
    assert (rc, out[12:]) == (0, b"lastword")
    with pytest.raises(Errno) as e:      # past the end of the label area
        ioctl(nmem0, 5, struct.pack("<III", KiB128 - 4, 8, 0) + bytes(8))
    assert e.value.errno == errno.EINVAL
    with pytest.raises(Errno) as e:      # the region is enabled
        ioctl(nmem0, 6, struct.pack("<II", 0, 8) + b"12345678" + bytes(4))
    assert e.value.errno == errno.EBUSY
    write(m, "bus/nd/drivers/nd_region/unbind", "region0\n")
    assert ioctl(nmem0, 6, struct.pack("<II", 0, 8) + b"12345678" + bytes(4))[0] == 0
    assert store.read(0, 8) == b"12345678"
    with pytest.raises(Errno) as e:      # no bus commands, no DSMs
        ioctl(ndbus0.ndctl, 1, bytes(16))
    assert e.value.errno == errno.ENOTTY
    with pytest.raises(Errno) as e:
        ioctl(nmem0, 3, bytes(8))
    assert e.value.errno == errno.ENOTTY


def test_ramdax_labels_live_at_the_end_of_the_range(machine):
    m = machine
    rehearse(m)
    ns = read(m, "bus/nd/devices/region0/namespace_seed").strip()
    u = "6bfa5b2f-3b0c-4b93-9d3b-44e8b5d7a1a0"
    write(m, f"bus/nd/devices/{ns}/uuid", u)
    write(m, f"bus/nd/devices/{ns}/size", str(64 * MiB))     # autolabel: v1.2 index blocks
    assert read(m, "bus/nd/devices/nmem0/available_slots") == "508\n"
    rng = m.kernel.nd.bus.devices["region0"].desc.mappings[0].nvdimm.media.store
    area = rng.read(GiB - KiB128, KiB128)
    assert area[:16] == b"NAMESPACE_INDEX\0"
    assert uuid.UUID(u).bytes in area
    assert not any(rng.read(0, 4096))            # the namespace's data is elsewhere
    # the labels survive the driver going away and coming back
    write(m, "bus/platform/drivers/ramdax/unbind", "e820_pmem\n")
    write(m, "bus/platform/drivers/ramdax/bind", "e820_pmem\n")
    assert read(m, f"bus/nd/devices/{ns}/uuid") == u + "\n"
    assert read(m, f"bus/nd/devices/{ns}/size") == f"{64 * MiB}\n"


def test_ramdax_509_namespaces(tmp_path):
    """510 slots of 256 bytes: 509 namespaces fit (a label update needs a
    free slot for the new label before it frees the old one); the 510th
    size write fails ENXIO with no slot left."""
    topo = parse('kernel = "6.19"\n[[bus]]\ntype = "e820"\ndriver_override = "ramdax"\n'
                 '[[bus.range]]\nstart = "4G"\nsize = "9G"\nramdax = true\n')
    m = Machine(topo, str(tmp_path / "state"))
    assert read(m, f"{DEV}/driver_override") == "ramdax\n"
    for i in range(510):
        seed = read(m, "bus/nd/devices/region0/namespace_seed").strip()
        assert seed == f"namespace0.{i}"
        write(m, f"bus/nd/devices/{seed}/uuid", str(uuid.uuid4()))
        if i == 509:
            break
        write(m, f"bus/nd/devices/{seed}/size", str(16 * MiB))
        write(m, "bus/nd/drivers/nd_pmem/bind", seed)
        write(m, "bus/nd/drivers/nd_pmem/unbind", seed)
    assert read(m, "bus/nd/devices/nmem0/available_slots") == "0\n"
    assert refused_in_process(m, f"bus/nd/devices/{seed}/size", str(16 * MiB)) == errno.ENXIO


def test_ramdax_topology_needs_619():
    with pytest.raises(ValueError, match="6.19"):
        Machine(parse('kernel = "6.1"\n[[bus]]\ntype = "e820"\n'
                      '[[bus.range]]\nstart = "4G"\nsize = "1G"\nramdax = true\n'))
    m = Machine(parse('kernel = "6.1"\n[[bus]]\ntype = "e820"\n[[bus.range]]\nstart = "4G"\nsize = "1G"\n'))
    assert not exists(m, "bus/platform/drivers/ramdax")


def test_ramdax_on_device_tree(tmp_path):
    """ramdax takes an OF pmem-region device's reg ranges; other nodes ENODEV."""
    m = Machine(parse(OF_TOPOLOGY), str(tmp_path / "state"))
    for dev in ("100000000.pmem", "200000000.pmem"):
        write(m, "bus/platform/drivers/of_pmem/unbind", dev)
        write(m, f"bus/platform/devices/{dev}/driver_override", "ramdax")
    write(m, "bus/platform/drivers/ramdax/bind", "100000000.pmem")
    assert read(m, "bus/nd/devices/ndbus0/provider") == "ramdax\n"
    assert sorted(n for n in m.kernel.nd.bus.devices if n.startswith("nmem")) == ["nmem0", "nmem1"]
    assert read(m, "bus/nd/devices/region1/mapping0") == f"nmem1,0,{256 * MiB - KiB128},0\n"
    assert refused_in_process(m, "bus/platform/drivers/ramdax/bind", "200000000.pmem") == errno.ENODEV
    assert not exists(m, "devices/platform/200000000.pmem/driver")
    assert sorted(n for n in m.kernel.nd.bus.devices if n.startswith("ndbus")) == ["ndbus0"]


# ---------------------------------------------------------------- the real tools

@needs_root
@needs_ndctl
def test_ramdax_rehearsal_with_ndctl(fake_factory, tmp_path):
    state = str(tmp_path / "state")
    fake = fake_factory("ramdax.toml", state=state)
    assert fake.json("ndctl list -B") == [{"provider": "e820", "dev": "ndbus0"}]
    fake.run(REHEARSAL, check=True)
    bus = fake.json("ndctl list -BDR")[0]
    assert bus["provider"] == "ramdax"
    assert sorted(d["dev"] for d in bus["dimms"]) == ["nmem0", "nmem1"]
    regions = {r["dev"]: r for r in bus["regions"]}
    assert regions["region0"]["size"] == GiB
    assert regions["region0"]["available_size"] == 1008 * MiB
    assert regions["region0"]["iset_id"] == 0xCAFEBEEFCAFEBEEF
    assert regions["region0"]["mappings"] == [{"dimm": "nmem0", "offset": 0, "length": GiB - KiB128,
                                               "position": 0}]
    # label-backed from the start: create-namespace may subdivide
    a = fake.json("ndctl create-namespace -r region0 -m fsdax -s 256M")
    b = fake.json("ndctl create-namespace -r region0 -m devdax -s 256M")
    assert (a["dev"], a["mode"], b["dev"], b["mode"]) == ("namespace0.0", "fsdax", "namespace0.1", "devdax")
    assert fake.sys("bus/nd/devices/nmem0/available_slots") == "507\n"
    # the labels are in the range: they survive a restart of the fake
    fake.down()
    again = fake_factory("ramdax.toml", state=state)
    again.run(REHEARSAL, check=True)
    found = {n["dev"]: n for n in again.json("ndctl list -N -r region0")}
    assert found["namespace0.0"]["uuid"] == a["uuid"] and found["namespace0.0"]["mode"] == "fsdax"
    assert found["namespace0.1"]["uuid"] == b["uuid"] and found["namespace0.1"]["mode"] == "devdax"


@needs_root
@needs_ndctl
def test_ramdax_init_labels_with_ndctl(fake_factory):
    fake = fake_factory("ramdax.toml")
    fake.run(REHEARSAL, check=True)
    busy = fake.run("ndctl init-labels nmem0")
    assert busy.returncode == 1 and "nmem0: regions active, abort label write" in busy.stderr
    fake.run("ndctl disable-region all", check=True)
    out = fake.run("ndctl init-labels all", check=True)
    assert "initialized 2 nmems" in out.stderr
    out = fake.run("ndctl init-labels -f -V 1.2 nmem1", check=True)
    fake.run("ndctl enable-region all", check=True)
    assert fake.sys("bus/nd/devices/nmem0/available_slots") == "1019\n"   # v1.1: 128-byte labels
    assert fake.sys("bus/nd/devices/nmem1/available_slots") == "509\n"    # v1.2: 256-byte labels
    assert "successfully verified 2 nmem labels" in fake.run("ndctl check-labels all").stderr
    labels = fake.json("ndctl read-labels -j nmem1")
    assert labels[0]["index"][0]["nslot"] == 510


@needs_root
@needs_ndctl
def test_ramdax_510th_namespace_refused(fake_factory, tmp_path):
    """509 namespaces fill 510 v1.2 slots; the real ndctl gets the kernel's
    ENXIO for the next one.  The first 507 are made with raw sysfs writes
    (what create-namespace does, minus its scans) to keep this fast."""
    path = tmp_path / "big.toml"
    path.write_text('kernel = "6.19"\n[[bus]]\ntype = "e820"\ndriver_override = "ramdax"\n'
                    '[[bus.range]]\nstart = "4G"\nsize = "9G"\nramdax = true\n')
    fake = fake_factory(str(path))
    fake.run("ndctl disable-region all && ndctl init-labels -V 1.2 all && ndctl enable-region all",
             check=True)
    for i in range(507):
        seed = f"namespace0.{i}"
        fake.write(f"bus/nd/devices/{seed}/uuid", str(uuid.uuid4()))
        fake.write(f"bus/nd/devices/{seed}/size", str(16 * MiB))
        fake.write("bus/nd/drivers/nd_pmem/bind", seed)
        fake.write("bus/nd/drivers/nd_pmem/unbind", seed)
    assert fake.sys("bus/nd/devices/nmem0/available_slots") == "2\n"
    for n in (507, 508):
        made = fake.json("ndctl create-namespace -r region0 -m raw -s 16M")
        assert made["dev"] == f"namespace0.{n}"
    assert fake.sys("bus/nd/devices/nmem0/available_slots") == "0\n"
    out = fake.run("ndctl create-namespace -r region0 -m raw -s 16M")
    assert out.returncode == 256 - errno.ENXIO
    assert "namespace0.509: set_size failed: No such device or address" in out.stderr
    assert fake.sys("bus/nd/devices/namespace0.509/size") == "0\n"
    assert fake.sys("bus/nd/devices/nmem0/available_slots") == "0\n"
