"""Legacy (e820), virtio-pmem and device-tree pmem through the real tools.

``devices/e820.toml`` is the golden e820 machine (``memmap=512M!2G`` on
6.1) and ``devices/virtio-pmem.toml`` the golden virtio-pmem one; the
of_pmem machines are written here.  Every test drives Debian's ndctl (or
writes sysfs the way a script would) and checks what it prints, what sysfs
shows, and, for rejected writes, that nothing changed.
"""

from __future__ import annotations

import errno
import os

from conftest import needs_ndctl, needs_root

pytestmark = [needs_root, needs_ndctl]

MiB = 1 << 20
E820_DEV = "devices/platform/e820_pmem"
E820_DRV = "bus/platform/drivers/e820_pmem"


def one(value):
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def exists(fake, path: str) -> bool:
    return os.path.lexists(os.path.join(fake.mnt, "sys", path))


def topology(tmp_path, text: str, name: str = "t.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ---------------------------------------------------------------- e820

def test_e820_boot(fake_factory):
    fake = fake_factory("e820.toml")
    bus = one(fake.json("ndctl list -BRN"))
    assert bus["provider"] == "e820" and bus["dev"] == "ndbus0"
    region = one(bus["regions"])
    assert (region["dev"], region["size"], region["available_size"]) == ("region0", 512 * MiB, 0)
    assert region["persistence_domain"] == "unknown"
    ns = one(region["namespaces"])
    assert (ns["dev"], ns["mode"], ns["map"], ns["size"], ns["blockdev"]) == \
        ("namespace0.0", "fsdax", "mem", 512 * MiB, "pmem0")
    # the platform device and its driver, as the real kernel shows them
    assert fake.sys(f"{E820_DEV}/driver_override") == "(null)\n"
    assert fake.sys(f"{E820_DEV}/modalias") == "platform:e820_pmem\n"
    assert fake.sys(f"{E820_DEV}/uevent") == "DRIVER=e820_pmem\nMODALIAS=platform:e820_pmem\n"
    assert not exists(fake, f"{E820_DEV}/numa_node")
    assert os.readlink(os.path.join(fake.mnt, "sys", f"{E820_DRV}/e820_pmem")) == \
        "../../../../devices/platform/e820_pmem"
    assert os.readlink(os.path.join(fake.mnt, "sys", f"{E820_DRV}/module")) == "../../../../module/nd_e820"
    assert fake.sys("bus/nd/devices/ndbus0/commands") == "\n"
    assert fake.sys("bus/nd/devices/region0/nstype") == "4\n"
    assert fake.sys("bus/nd/devices/region0/mappings") == "0\n"
    for hidden in ("available_size", "set_cookie", "deep_flush", "persistence_domain"):
        assert not exists(fake, f"bus/nd/devices/region0/{hidden}")
    # 6.1 has no ramdax
    assert not exists(fake, "bus/platform/drivers/ramdax")
    # no DIMMs, so nothing to label
    out = fake.run("ndctl init-labels all")
    assert out.returncode == 0 and "initialized 0 nmem" in out.stderr


def test_e820_reconfigure_and_no_subdivision(fake_factory):
    fake = fake_factory("e820.toml")
    out = fake.run("ndctl create-namespace -r region0 -m fsdax -s 128M")
    assert out.returncode == 237
    assert "Legacy / label-less namespaces do not support sub-dividing a region" in out.stderr
    busy = fake.run("ndctl create-namespace -e namespace0.0 -m devdax")
    assert busy.returncode == 240 and "specify --force" in busy.stderr
    dax = fake.json("ndctl create-namespace -f -e namespace0.0 -m devdax")
    assert (dax["mode"], dax["size"], dax["daxregion"]["devices"][0]["chardev"]) == \
        ("devdax", 526385152, "dax0.0")
    sector = fake.json("ndctl create-namespace -f -e namespace0.0 -m sector")
    assert (sector["mode"], sector["blockdev"], sector["sector_size"]) == ("sector", "pmem0s", 4096)
    raw = fake.json("ndctl create-namespace -f -e namespace0.0 -m raw")
    assert (raw["mode"], raw["map"], raw["size"]) == ("fsdax", "mem", 512 * MiB)
    # a label-less region has no size to write
    assert fake.refused("bus/nd/devices/namespace0.0/size", "0\n") == errno.EACCES


def test_e820_media_survives_rebind_and_restart(fake_factory, tmp_path):
    state = str(tmp_path / "state")
    fake = fake_factory("e820.toml", state=state)
    fake.run("printf hello-e820 | dd of=/dev/pmem0 bs=1 seek=8192 conv=notrunc status=none", check=True)
    fake.write(f"{E820_DRV}/unbind", "e820_pmem\n")
    assert not exists(fake, "bus/nd/devices/ndbus0")
    assert not exists(fake, f"{E820_DEV}/driver")
    assert fake.sys(f"{E820_DEV}/uevent") == "MODALIAS=platform:e820_pmem\n"
    fake.write(f"{E820_DRV}/bind", "e820_pmem\n")
    # the ids come back: the bus, region and namespace were released
    assert fake.sys("bus/nd/devices/region0/namespace0.0/mode") == "memory\n"
    read = "dd if=/dev/pmem0 bs=1 skip=8192 count=10 status=none"
    assert fake.run(read, check=True).stdout == "hello-e820"
    fake.down()
    again = fake_factory("e820.toml", state=state)
    assert again.run(read, check=True).stdout == "hello-e820"


def test_e820_several_ranges(fake_factory, tmp_path):
    path = topology(tmp_path, """
kernel = "6.1"
[[bus]]
type = "e820"
[[bus.range]]
start = "6G"
size = "256M"
numa_node = 1
target_node = 1
[[bus.range]]
start = "4G"
size = "512M"
""")
    fake = fake_factory(path)
    bus = one(fake.json("ndctl list -BR -vvv"))
    regions = {r["dev"]: r for r in bus["regions"]}
    # one region per range, in address order
    assert (regions["region0"]["size"], regions["region0"]["numa_node"]) == (512 * MiB, 0)
    assert (regions["region1"]["size"], regions["region1"]["numa_node"]) == (256 * MiB, 1)
    assert fake.sys("bus/nd/devices/region1/resource") == "0x180000000\n"
    assert len(os.listdir(os.path.join(fake.mnt, "sys/bus/platform/devices"))) == 1


def test_driver_override_protocol(fake_factory):
    fake = fake_factory("e820.toml")
    path = f"{E820_DEV}/driver_override"

    def state():
        return (fake.sys(path), fake.sys(f"{E820_DEV}/uevent"), exists(fake, "bus/nd/devices/ndbus0"))

    before = state()
    # one page minus one byte, or more, is refused whatever it says
    assert fake.refused(path, "x" * 4095) == errno.EINVAL
    assert fake.refused(path, "ramdax" + "\0" * 4089) == errno.EINVAL
    assert state() == before
    # binding with the wrong name, unbinding from the wrong driver, binding twice
    assert fake.refused(f"{E820_DRV}/bind", "e820_pmem.0\n") == errno.ENODEV
    assert fake.refused(f"{E820_DRV}/bind", "x" * 1000) == errno.ENODEV
    assert fake.refused(f"{E820_DRV}/bind", "e820_pmem\n") == errno.EBUSY
    assert state() == before
    # a long name is kept (shorter than a page), cut at the first newline
    fake.write(path, "y" * 1000)
    assert fake.sys(path) == "y" * 1000 + "\n"
    fake.write(path, "foo\nbar")
    assert fake.sys(path) == "foo\n"
    # setting it binds and unbinds nothing
    assert fake.sys(f"{E820_DEV}/uevent").startswith("DRIVER=e820_pmem\n")
    # the override now hides the device from its own driver
    fake.write(f"{E820_DRV}/unbind", "e820_pmem")
    assert fake.refused(f"{E820_DRV}/bind", "e820_pmem") == errno.ENODEV
    fake.write("bus/platform/drivers_probe", "e820_pmem\n")   # nothing matches: not an error
    assert not exists(fake, f"{E820_DEV}/driver")
    # "\n" (or an empty write, or NULs) clears it; then the name matches again
    fake.write(path, "\n")
    assert fake.sys(path) == "(null)\n"
    fake.write(path, "foo")
    fake.write(path, "\0\0")
    assert fake.sys(path) == "(null)\n"
    fake.write("bus/platform/drivers_probe", "e820_pmem")
    assert fake.sys(f"{E820_DEV}/uevent").startswith("DRIVER=e820_pmem\n")
    assert fake.refused("bus/platform/drivers_probe", "nosuch\n") == errno.ENODEV
    assert fake.json("ndctl list -B") == [{"provider": "e820", "dev": "ndbus0"}]


# ---------------------------------------------------------------- virtio-pmem

VIRTIO = "devices/pci0000:00/0000:00:04.0/virtio2"


def test_virtio_pmem_boot(fake_factory):
    fake = fake_factory("virtio-pmem.toml")
    bus = one(fake.json("ndctl list -BRN -vvv"))
    assert bus["provider"] == "virtio-pmem"
    region = one(bus["regions"])
    assert (region["size"], region["target_node"]) == (1 << 30, 0)
    assert "numa_node" not in region          # -1: ndctl leaves it out
    ns = one(region["namespaces"])
    assert (ns["mode"], ns["map"], ns["blockdev"]) == ("fsdax", "mem", "pmem0")
    assert fake.sys("bus/nd/devices/region0/numa_node") == "-1\n"
    assert fake.sys("bus/nd/devices/region0/resource") == "0x100000000\n"
    assert not exists(fake, "bus/nd/devices/region0/deep_flush")
    assert fake.sys(f"{VIRTIO}/device") == "0x001b\n"
    assert fake.sys(f"{VIRTIO}/vendor") == "0x1af4\n"
    assert fake.sys(f"{VIRTIO}/status") == "0x0000000f\n"
    assert fake.sys(f"{VIRTIO}/modalias") == "virtio:d0000001Bv00001AF4\n"
    assert fake.sys(f"{VIRTIO}/features") == "0" * 28 + "11001" + "0" * 7 + "1" + "0" * 23 + "\n"
    assert fake.sys(f"{VIRTIO}/uevent") == "DRIVER=virtio_pmem\nMODALIAS=virtio:d0000001Bv00001AF4\n"
    assert os.readlink(os.path.join(fake.mnt, "sys/bus/virtio/drivers/virtio_pmem/virtio2")) == \
        "../../../../devices/pci0000:00/0000:00:04.0/virtio2"
    assert os.readlink(os.path.join(fake.mnt, "sys/class/nd/ndctl0")) == \
        "../../devices/pci0000:00/0000:00:04.0/virtio2/ndbus0/nd/ndctl0"


def test_virtio_pmem_rebind_and_modes(fake_factory):
    fake = fake_factory("virtio-pmem.toml")
    fsdax = fake.json("ndctl create-namespace -f -e namespace0.0 -m fsdax")
    assert (fsdax["mode"], fsdax["map"], fsdax["size"]) == ("fsdax", "dev", 1054867456)   # as the golden 006
    drv = "bus/virtio/drivers/virtio_pmem"
    assert fake.refused(f"{drv}/unbind", "virtio0\n") == errno.ENODEV
    fake.write(f"{drv}/unbind", "virtio2\n")
    assert fake.sys(f"{VIRTIO}/status") == "0x00000001\n"
    assert fake.run("ndctl list -B", check=True).stdout.strip() == ""
    fake.write(f"{drv}/bind", "virtio2\n")
    assert fake.sys(f"{VIRTIO}/status") == "0x0000000f\n"
    # the fsdax info block is on the media: the namespace comes back claimed
    ns = one(fake.json("ndctl list -N"))
    assert (ns["mode"], ns["map"], ns["uuid"]) == ("fsdax", "dev", fsdax["uuid"])


# ---------------------------------------------------------------- of_pmem

OF_TOPOLOGY = """
kernel = "6.19"
[[bus]]
type = "of_pmem"
node = "pmem@100000000"
[[bus.reg]]
start = "4G"
size = "256M"
[[bus.reg]]
start = 0x110000000
size = "256M"

[[bus]]
type = "of_pmem"
node = "pmem@200000000"
compatible = "pmem-region-v2"
volatile = true
numa_node = 0
[[bus.reg]]
start = "8G"
size = "512M"
"""


def test_of_pmem(fake_factory, tmp_path):
    fake = fake_factory(topology(tmp_path, OF_TOPOLOGY))
    buses = {b["provider"]: b for b in fake.json("ndctl list -BR")}
    assert set(buses) == {"100000000.pmem", "200000000.pmem"}
    assert sorted(r["dev"] for r in buses["100000000.pmem"]["regions"]) == ["region0", "region1"]
    assert {r["persistence_domain"] for r in buses["100000000.pmem"]["regions"]} == {"memory_controller"}
    dev = "devices/platform/100000000.pmem"
    assert fake.sys(f"{dev}/modalias") == "of:NpmemT(null)Cpmem-region\n"
    assert fake.sys(f"{dev}/uevent") == (
        "DRIVER=of_pmem\nOF_NAME=pmem\nOF_FULLNAME=/pmem@100000000\nOF_COMPATIBLE_0=pmem-region\n"
        "OF_COMPATIBLE_N=1\nMODALIAS=of:NpmemT(null)Cpmem-region\n")
    assert fake.sys("bus/nd/devices/region0/devtype") == "nd_pmem\n"
    assert fake.sys("bus/nd/devices/region0/nstype") == "4\n"
    assert not exists(fake, "bus/nd/devices/region0/target_node")   # no numa-node-id
    volatile = "devices/platform/200000000.pmem/ndbus1/region2"
    assert fake.sys(f"{volatile}/devtype") == "nd_volatile\n"
    assert fake.sys(f"{volatile}/modalias") == "nd:t2\n"
    assert not exists(fake, f"{volatile}/persistence_domain")
    assert fake.sys(f"{volatile}/target_node") == "0\n"
    with open(os.path.join(fake.mnt, "sys", dev, "of_node", "compatible"), "rb") as f:
        assert f.read() == b"pmem-region\0"
    ns = fake.json("ndctl create-namespace -f -e namespace2.0 -m devdax")
    assert ns["mode"] == "devdax"
