"""Reboots: ``fakesys reboot [--warm|--cold]``.

The device model is rebuilt as at boot (bound drivers and
``driver_override`` are gone, namespaces come back from labels and info
blocks).  Media decide what survives: NVDIMM media and label areas and
virtio-pmem's host file are persistent; memmap= ranges, ramdax ranges and
volatile device-tree regions are RAM, kept across a warm reboot (kexec)
and zeroed by a cold one.
"""

from __future__ import annotations

import os
import subprocess

from conftest import FAKESYS, ROOT, needs_ndctl, needs_root
from fakesys.platform.machine import Machine
from fakesys.platform.topology import parse

DEVICES = os.path.join(ROOT, "devices")
REHEARSAL = ("echo e820_pmem > /sys/bus/platform/drivers/e820_pmem/unbind && "
             "echo ramdax > /sys/bus/platform/devices/e820_pmem/driver_override && "
             "echo e820_pmem > /sys/bus/platform/drivers/ramdax/bind")
MiB = 1 << 20


def stores_by_name(m: Machine) -> dict[str, object]:
    return {os.path.basename(s.path): s for s in m.stores}


def test_power_off_keeps_or_zeroes_by_kind(tmp_path):
    topo = parse('''
kernel = "6.19"
[[bus]]
type = "nfit"
[[bus.dimm]]
name = "nv0"
handle = 1
size = "64M"
[[bus.region]]
spa = "16G"
size = "64M"
dimms = ["nv0"]
[[bus]]
type = "e820"
[[bus.range]]
start = "4G"
size = "32M"
[[bus]]
type = "virtio-pmem"
start = "8G"
size = "32M"
[[bus]]
type = "of_pmem"
node = "pmem@c0000000"
[[bus.reg]]
start = 0xc0000000
size = "32M"
[[bus.reg]]
start = 0xe0000000
size = "32M"
ramdax = true
[[bus]]
type = "of_pmem"
node = "vmem@d0000000"
volatile = true
[[bus.reg]]
start = 0xd0000000
size = "32M"
''')
    state = str(tmp_path / "state")
    for cold, survivors in ((False, None), (True, {"nv0.labels", "nv0.media", "virtio-pmem-200000000.pmem",
                                                    "of-c0000000.pmem"})):
        m = Machine(topo, state)
        names = stores_by_name(m)
        for store in names.values():
            store.write(store.size - 5, b"hello")
        m.power_off(cold)
        m = Machine(topo, state)
        kept = {n for n, s in stores_by_name(m).items() if s.read(s.size - 5, 5) == b"hello"}
        assert kept == (set(names) if survivors is None else survivors), cold
        assert set(stores_by_name(m)) == set(names)


@needs_root
@needs_ndctl
def test_reboot_ramdax_warm_then_cold(fake_factory, tmp_path):
    fake = fake_factory("ramdax.toml", state=str(tmp_path / "state"))
    fake.run(REHEARSAL, check=True)
    ns = fake.json("ndctl create-namespace -r region0 -m fsdax -s 64M")

    def reboot(*flags):
        out = subprocess.run(FAKESYS + ["reboot", "--name", fake.name, *flags], capture_output=True,
                             text=True, cwd=ROOT, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == fake.mnt

    reboot("--warm")
    # rebuilt as at boot: nd_e820 has the ranges again, the override is gone
    assert fake.sys("bus/platform/devices/e820_pmem/driver_override") == "(null)\n"
    assert fake.json("ndctl list -B") == [{"provider": "e820", "dev": "ndbus0"}]
    fake.run(REHEARSAL, check=True)
    back = fake.json("ndctl list -N -r region0")
    assert [(n["dev"], n["uuid"], n["mode"]) for n in back] == [("namespace0.0", ns["uuid"], "fsdax")]

    reboot("--cold")
    fake.run(REHEARSAL, check=True)
    assert fake.run("ndctl list -N", check=True).stdout.strip() == ""
    assert fake.sys("bus/nd/devices/nmem0/available_slots") == "509\n"   # blank label area again


@needs_root
@needs_ndctl
def test_reboot_cold_keeps_nvdimm_and_virtio_media(fake_factory, tmp_path):
    nfit = fake_factory("default.toml", state=str(tmp_path / "nfit"))
    made = nfit.json("ndctl create-namespace -r region1 -m fsdax -s 256M")
    virtio = fake_factory("virtio-pmem.toml", state=str(tmp_path / "virtio"))
    dax = virtio.json("ndctl create-namespace -f -e namespace0.0 -m devdax")
    for fake in (nfit, virtio):
        out = subprocess.run(FAKESYS + ["reboot", "--cold", "--name", fake.name], capture_output=True,
                             text=True, cwd=ROOT, timeout=60)
        assert out.returncode == 0, out.stderr
    found = {n["uuid"]: n for n in nfit.json("ndctl list -N")}
    assert found[made["uuid"]]["mode"] == "fsdax" and found[made["uuid"]]["size"] == made["size"]
    again = virtio.json("ndctl list -N")
    again = again[0] if isinstance(again, list) else again
    assert (again["mode"], again["uuid"]) == ("devdax", dax["uuid"])


@needs_root
def test_reboot_needs_a_running_fake():
    out = subprocess.run(FAKESYS + ["reboot", "--name", "no-such-fake"], capture_output=True, text=True,
                         cwd=ROOT, timeout=30)
    assert out.returncode == 1 and "no fake named 'no-such-fake'" in out.stderr
