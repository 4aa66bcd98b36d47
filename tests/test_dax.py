"""The real daxctl (and ndctl) against dax regions: pmem devdax and hmem.

``devices/qemu-hmem.toml`` is the golden hmem machine (6.1: one 512 MiB
soft-reserved range on node 1, ``hmem.0`` with ``dax0.0`` in devdax mode);
``devices/hmem.toml`` has two ranges on 6.19 (devices start in kmem).
After every daxctl step the test checks what daxctl reports against what
sysfs says (available_size, mappings).  Refused raw writes must return the
kernel's errno and change nothing.
"""

from __future__ import annotations

import errno
import os

import pytest

from conftest import needs_ndctl, needs_root

pytestmark = [needs_root, needs_ndctl]

MiB = 1 << 20
HMEM = "devices/platform/hmem.0"
REGION = f"{HMEM}/dax_region"


def as_list(value):
    return value if isinstance(value, list) else [value]


def region(fake, rid: int = 0) -> dict:
    """``daxctl list -RDMiu -r N`` (sizes in bytes: no -u)."""
    out = fake.json(f"daxctl list -RDMi -r {rid}")
    return as_list(out)[0]


def devices(fake, rid: int = 0) -> dict[str, dict]:
    return {d["chardev"]: d for d in region(fake, rid).get("devices", [])}


def available(fake) -> int:
    return int(fake.sys(f"{REGION}/available_size"))


def sysfs_mappings(fake, dev: str) -> list[dict]:
    out, i = [], 0
    base = os.path.join(fake.mnt, "sys", HMEM, dev)
    while os.path.isdir(f"{base}/mapping{i}"):
        start, end, pgoff = (int(fake.sys(f"{HMEM}/{dev}/mapping{i}/{a}"), 16)
                             for a in ("start", "end", "page_offset"))
        out.append({"page_offset": pgoff, "start": start, "end": end, "size": end - start + 1})
        i += 1
    return out


def check_consistent(fake) -> dict[str, dict]:
    """daxctl's view of region 0 agrees with sysfs; returns its devices."""
    reg = region(fake)
    devs = {d["chardev"]: d for d in reg.get("devices", [])}
    assert reg.get("available_size", 0) == available(fake)
    used = 0
    for name, dev in devs.items():
        assert dev["size"] == int(fake.sys(f"{HMEM}/{name}/size"))
        ours = sorted(dev.get("mappings", []), key=lambda m: m["page_offset"])
        assert ours == sysfs_mappings(fake, name)
        used += dev["size"]
    assert used + available(fake) == reg["size"]
    return devs


@pytest.fixture
def hmem(fake_factory):
    return fake_factory("qemu-hmem.toml")


def test_devdax_namespace_then_daxctl_list(fake):
    ns = fake.json("ndctl create-namespace -r region2 -m devdax -s 512M")
    assert ns["mode"] == "devdax" and ns["daxregion"]["id"] == 2
    reg = as_list(fake.json("daxctl list -RDMu -r 2"))[0]
    assert reg["id"] == 2 and reg["size"] == "502.00 MiB (526.39 MB)"
    assert "available_size" not in reg     # static regions have none
    (dev,) = reg["devices"]
    assert dev["chardev"] == "dax2.0" and dev["mode"] == "devdax" and dev["align"] == 2 * MiB
    (m,) = dev["mappings"]
    claim = ns["daxregion"]["devices"][0]["chardev"]
    base = f"bus/dax/devices/{claim}"
    assert int(fake.sys(f"{base}/resource"), 16) == int(m["start"], 16)
    assert fake.run("test -c /dev/dax2.0").returncode == 0
    # the hmem region of the default topology is listed too, in kmem mode (6.19)
    other = as_list(fake.json("daxctl list -D -r 3"))[0]
    assert other["chardev"] == "dax3.0" and other["mode"] == "system-ram"


def test_static_region_refuses_dynamic_operations(fake):
    fake.run("ndctl create-namespace -r region1 -m devdax -s 256M", check=True)
    before = fake.json("daxctl list -RDMi -r 1")
    assert fake.run("daxctl create-device -r 1").returncode == 228           # ENOSPC
    assert fake.run("daxctl reconfigure-device -s 128M dax1.0").returncode == 250
    fake.run("daxctl disable-device dax1.0", check=True)
    assert fake.run("daxctl destroy-device dax1.0").returncode == 250
    fake.run("daxctl enable-device dax1.0", check=True)
    assert fake.json("daxctl list -RDMi -r 1") == before


def test_boot_state_matches_the_golden_machine(hmem):
    devs = check_consistent(hmem)
    assert list(devs) == ["dax0.0"]
    d = devs["dax0.0"]
    assert (d["size"], d["target_node"], d["align"], d["mode"]) == (512 * MiB, 1, 2 * MiB, "devdax")
    assert d["mappings"] == [{"page_offset": 0, "start": 0x80000000, "end": 0x9fffffff, "size": 512 * MiB}]


def test_create_until_full(hmem):
    # a bound device cannot be resized (daxctl reports ENXIO for the kernel's EBUSY)
    assert hmem.run("daxctl reconfigure-device -s 256M dax0.0").returncode == 250
    hmem.run("daxctl disable-device dax0.0", check=True)
    r = hmem.run("daxctl destroy-device dax0.0")     # sized to 0, but id 0 stays
    assert r.returncode == 240 and "Device or resource busy" in r.stderr
    devs = check_consistent(hmem)
    assert devs["dax0.0"]["size"] == 0 and available(hmem) == 512 * MiB
    expect = {}
    for size, align, start in ((256, None, 0x80000000), (128, None, 0x90000000),
                               (100, 4096, 0x98000000), (None, None, 0x9e400000)):
        cmd = "daxctl create-device -r 0" + (f" -s {size}M" if size else "") + (f" -a {align}" if align else "")
        (made,) = hmem.json(cmd)
        size = size * MiB if size else 28 * MiB
        assert made["size"] == size and made["align"] == (align or 2 * MiB) and made["mode"] == "devdax"
        expect[made["chardev"]] = start
        devs = check_consistent(hmem)
        assert devs[made["chardev"]]["mappings"][0]["start"] == start
    assert list(expect) == ["dax0.1", "dax0.2", "dax0.3", "dax0.4"]
    assert available(hmem) == 0 and hmem.sys(f"{REGION}/create") == "dax0.4\n"
    for extra in ("-s 2M", "-s 64M -a 1G"):
        r = hmem.run(f"daxctl create-device -r 0 {extra}")
        assert r.returncode == 228 and "No space left on device" in r.stderr
    assert sorted(check_consistent(hmem)) == ["dax0.0", "dax0.1", "dax0.2", "dax0.3", "dax0.4"]


def test_resize_disable_enable_destroy(hmem):
    hmem.run("daxctl disable-device dax0.0", check=True)
    hmem.run("daxctl reconfigure-device -s 256M dax0.0", check=True)      # shrink
    devs = check_consistent(hmem)
    assert devs["dax0.0"]["mappings"][0]["end"] == 0x8fffffff and devs["dax0.0"]["state"] == "disabled"
    (b,) = hmem.json("daxctl create-device -r 0 -s 64M")
    assert b["chardev"] == "dax0.1"
    # enabling dax0.1 writes device_dax/new_id, whose driver_attach binds
    # every unbound non-empty device device_dax matches: dax0.0 too
    assert "state" not in check_consistent(hmem)["dax0.0"]
    hmem.run("daxctl disable-device dax0.0", check=True)
    hmem.run("daxctl reconfigure-device -s 384M dax0.0", check=True)      # grows past dax0.1
    devs = check_consistent(hmem)
    assert sorted((m["page_offset"], m["start"], m["size"]) for m in devs["dax0.0"]["mappings"]) == \
        [(0, 0x80000000, 256 * MiB), (256 * MiB // 4096, 0x94000000, 128 * MiB)]
    assert available(hmem) == 64 * MiB
    r = hmem.run("daxctl reconfigure-device -s 1G dax0.0")                # beyond available
    assert r.returncode == 250
    assert check_consistent(hmem) == devs
    hmem.run("daxctl enable-device dax0.0", check=True)
    devs = check_consistent(hmem)
    assert "state" not in devs["dax0.0"] and devs["dax0.0"]["mode"] == "devdax"
    assert hmem.run("daxctl reconfigure-device -s 128M dax0.0").returncode == 250  # enabled
    assert check_consistent(hmem) == devs
    r = hmem.run("daxctl destroy-device dax0.1")                          # enabled: refused
    assert r.returncode != 0 and "dax0.1" in check_consistent(hmem)
    hmem.run("daxctl destroy-device -f dax0.1", check=True)
    devs = check_consistent(hmem)
    assert "dax0.1" not in devs and available(hmem) == 128 * MiB
    assert hmem.run("test -e /dev/dax0.1 || test -e /sys/bus/dax/devices/dax0.1").returncode == 1
    hmem.run("daxctl disable-device dax0.0 && daxctl reconfigure-device -s 64M dax0.0", check=True)
    devs = check_consistent(hmem)
    assert devs["dax0.0"]["mappings"] == [{"page_offset": 0, "start": 0x80000000,
                                           "end": 0x83ffffff, "size": 64 * MiB}]


def test_reconfigure_mode_devdax_round_trip(hmem):
    r = hmem.run("daxctl reconfigure-device --mode=devdax dax0.0", check=True)
    assert "already in devdax mode" in r.stderr
    hmem.run("daxctl disable-device dax0.0", check=True)
    (dev,) = hmem.json("daxctl reconfigure-device --mode=devdax dax0.0")   # enables it again
    assert dev["mode"] == "devdax" and "state" not in dev
    hmem.run("daxctl disable-device dax0.0", check=True)
    hmem.run("daxctl reconfigure-device -a 4096 -s 128M dax0.0", check=True)
    dev = devices(hmem)["dax0.0"]
    assert dev["align"] == 4096 and dev["size"] == 128 * MiB and dev["state"] == "disabled"
    (dev,) = hmem.json("daxctl reconfigure-device --mode=devdax dax0.0")
    assert dev["mode"] == "devdax" and dev["align"] == 4096
    assert hmem.sys(f"{HMEM}/dax0.0/uevent").splitlines()[3] == "DRIVER=device_dax"


def test_kmem_bind_at_the_sysfs_level(hmem):
    """6.1: kmem matches a device only after its name went to new_id."""
    hmem.run("daxctl disable-device dax0.0", check=True)
    with pytest.raises(OSError) as e:
        hmem.write("bus/dax/drivers/kmem/bind", "dax0.0\n")
    assert e.value.errno == errno.ENODEV
    hmem.write("bus/dax/drivers/kmem/new_id", "dax0.0\n")   # attaches it right away
    assert os.readlink(os.path.join(hmem.mnt, "sys", HMEM, "dax0.0/driver")).endswith("/kmem")
    assert (devices(hmem)["dax0.0"]["mode"]) == "system-ram"
    with pytest.raises(OSError) as e:
        hmem.write("bus/dax/drivers/kmem/bind", "dax0.0\n")
    assert e.value.errno == errno.EBUSY
    hmem.write("bus/dax/drivers/kmem/remove_id", "dax0.0\n")
    hmem.write("bus/dax/drivers/kmem/unbind", "dax0.0\n")
    hmem.write("bus/dax/drivers/device_dax/bind", "dax0.0\n")
    assert devices(hmem)["dax0.0"]["mode"] == "devdax"


def test_newer_kernels_start_hmem_devices_in_kmem(fake_factory):
    fake = fake_factory("hmem.toml")
    regions = {r["id"]: r for r in as_list(fake.json("daxctl list -RD"))}
    assert sorted(regions) == [0, 1]
    assert regions[0]["size"] == 1 << 30 and regions[1]["size"] == 512 * MiB
    for rid, node in ((0, 1), (1, 2)):
        (dev,) = regions[rid]["devices"]
        assert dev["mode"] == "system-ram" and dev["target_node"] == node
    assert fake.sys("devices/platform/hmem.1/numa_node") == "0\n"
    assert os.path.isdir(os.path.join(fake.mnt, "sys/devices/platform/hmem_platform.0"))


def test_bad_writes_leave_state_alone(hmem):
    hmem.run("daxctl disable-device dax0.0 && daxctl reconfigure-device -s 256M dax0.0", check=True)
    before = check_consistent(hmem)
    cases = [
        (f"{HMEM}/dax0.0/size", "12345\n", errno.EINVAL),               # not 2M-aligned
        (f"{HMEM}/dax0.0/size", "0x40000000\n", errno.ENOSPC),          # more than is left
        (f"{HMEM}/dax0.0/align", "8192\n", errno.EINVAL),
        (f"{HMEM}/dax0.0/align", "x\n", errno.ENXIO),
        (f"{HMEM}/dax0.0/mapping", "0x80000000-0x801fffff\n", errno.ENOMEM),   # taken
        (f"{HMEM}/dax0.0/mapping", "junk\n", errno.EINVAL),
        (f"{REGION}/create", "2\n", errno.EINVAL),
        (f"{REGION}/delete", "dax0.0\n", errno.EBUSY),                  # not empty, and id 0
        (f"{REGION}/delete", "dax0.9\n", errno.ENXIO),
        ("bus/dax/drivers/device_dax/new_id", "dax0\n", errno.EINVAL),
        ("bus/dax/drivers/device_dax/bind", "dax7.7\n", errno.ENODEV),
    ]
    for path, value, err in cases:
        with pytest.raises(OSError) as e:
            hmem.write(path, value)
        assert e.value.errno == err, (path, value)
    assert check_consistent(hmem) == before
    hmem.write(f"{REGION}/create", "1\n")
    assert hmem.sys(f"{REGION}/seed") == "dax0.1\n"
    with pytest.raises(OSError) as e:
        hmem.write("bus/dax/drivers/device_dax/bind", "dax0.1\n")  # empty device
    assert e.value.errno == errno.ENXIO
    hmem.write(f"{HMEM}/dax0.1/size", "0x10000000\n")
    with pytest.raises(OSError) as e:
        hmem.write(f"{REGION}/create", "1\n")                     # full
    assert e.value.errno == errno.ENOSPC
    assert hmem.sys(f"{REGION}/create") == "dax0.1\n"
