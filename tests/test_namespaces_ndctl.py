"""The real ndctl manages namespaces on the default topology.

Every test drives Debian's ndctl inside ``fakesys run`` and checks what it
prints and what sysfs shows afterwards.  The default topology has four
2 GiB DIMMs with initialized (v1.1) labels: region0 interleaves nvdimm0+1
(4 GiB), region1 and region2 are one DIMM each (2 GiB).
"""

from __future__ import annotations

import errno
import os
import uuid

import pytest

from conftest import needs_ndctl, needs_root
from fakesys.kernel.nvdimm.pfn import PFN_SIG, PfnMode, PfnSuperblock

pytestmark = [needs_root, needs_ndctl]

MiB = 1 << 20
GiB = 1 << 30
REGION1 = "bus/nd/devices/region1"


def one(value):
    """ndctl prints a lone object without -u and an array with it, or vice versa."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def region_sizes(fake, region: str = "region1") -> tuple[int, int]:
    base = f"bus/nd/devices/{region}"
    return int(fake.sys(f"{base}/available_size")), int(fake.sys(f"{base}/max_available_extent"))


def test_list_buses_dimms_regions(fake):
    buses = fake.json("ndctl list -B")
    assert buses == [{"provider": "ACPI.NFIT", "dev": "ndbus0"}]
    dimms = fake.json("ndctl list -D")
    assert sorted(d["dev"] for d in dimms) == ["nmem0", "nmem1", "nmem2", "nmem3"]
    assert {d["handle"] for d in dimms} == {0x0, 0x1, 0x100, 0x101}
    regions = {r["dev"]: r for r in fake.json("ndctl list -R")}
    assert regions["region0"]["size"] == 4 * GiB
    assert regions["region0"]["available_size"] == 4 * GiB
    assert regions["region1"]["size"] == 2 * GiB
    assert all(r["type"] == "pmem" for r in regions.values())
    # no namespace has capacity yet: -N lists nothing, -Ni shows the idle seeds
    assert fake.run("ndctl list -N", check=True).stdout.strip() == ""
    idle = fake.json("ndctl list -Ni")
    assert {n["dev"] for n in idle} == {"namespace0.0", "namespace1.0", "namespace2.0"}
    assert all(n["size"] == 0 for n in idle)


def test_list_verbosity_and_units(fake):
    fake.run("ndctl create-namespace -r region1 -m fsdax -s 256M", check=True)
    plain = one(fake.json("ndctl list -BDRN"))
    human = one(fake.json("ndctl list -BDRNu"))
    assert any(r["size"] == 2 * GiB for r in plain["regions"])
    assert any(r["size"] == "2.00 GiB (2.15 GB)" for r in human["regions"])
    v1 = fake.run("ndctl list -BDRN -v", check=True).stdout
    v2 = fake.run("ndctl list -BDRN -vv", check=True).stdout
    v3 = fake.run("ndctl list -BDRN -vvv", check=True).stdout
    assert len(v3) > len(v2) >= len(v1) > len(fake.run("ndctl list -BDRN", check=True).stdout)
    assert '"mappings"' in v3 and '"capabilities"' in v3
    ns = one(fake.json("ndctl list -N -n namespace1.0 -v"))
    assert ns["mode"] == "fsdax" and ns["numa_node"] == 0


@pytest.mark.parametrize("mode,size,expect", [
    ("raw", "128M", {"mode": "raw", "size": 128 * MiB, "blockdev": "pmem1"}),
    ("fsdax", "256M", {"mode": "fsdax", "map": "dev", "size": 262144000, "blockdev": "pmem1", "align": 2 * MiB}),
    ("devdax", "256M", {"mode": "devdax", "map": "dev", "size": 262144000, "align": 2 * MiB}),
    ("sector", "128M", {"mode": "sector", "size": 133005312, "sector_size": 4096, "blockdev": "pmem1s"}),
])
def test_create_each_mode(fake, mode, size, expect):
    before, _ = region_sizes(fake)
    ns = fake.json(f"ndctl create-namespace -r region1 -m {mode} -s {size}")
    for key, value in expect.items():
        assert ns[key] == value, (key, ns)
    assert ns["dev"] == "namespace1.0"
    after, _ = region_sizes(fake)
    assert before - after == int(size[:-1]) * MiB
    holder = fake.sys(f"{REGION1}/namespace1.0/holder").strip()
    assert fake.sys(f"{REGION1}/namespace1.0/mode").strip() == \
        {"raw": "raw", "fsdax": "memory", "devdax": "dax", "sector": "safe"}[mode]
    if mode == "raw":
        assert holder == ""
    else:
        assert holder.startswith({"fsdax": "pfn", "devdax": "dax", "sector": "btt"}[mode])
    if "blockdev" in expect:
        assert os.path.exists(os.path.join(fake.mnt, "dev", expect["blockdev"]))
        assert fake.run(f"test -e /dev/{expect['blockdev']} && test -e /sys/block/{expect['blockdev']}").returncode == 0
    # the seed rolled forward to a fresh idle namespace
    assert fake.sys(f"{REGION1}/namespace_seed").strip() == "namespace1.1"


def test_devdax_listing_through_daxctl(fake):
    fake.run("ndctl create-namespace -r region2 -m devdax -s 512M", check=True)
    region = fake.json("daxctl list -RDu")
    region = region[0] if isinstance(region, list) else region
    # 512 MiB minus the 10 MiB the info block and struct page area (mode pmem) take
    assert region["id"] == 2 and region["size"] == "502.00 MiB (526.39 MB)"
    dev = region["devices"][0]
    assert dev["chardev"] == "dax2.0" and dev["mode"] == "devdax"
    assert fake.run("test -c /dev/dax2.0").returncode == 0
    listed = fake.json("ndctl list -X")
    listed = listed[0] if isinstance(listed, list) else listed
    assert listed["daxregion"]["devices"][0]["chardev"] == "dax2.0"


def test_create_options(fake):
    ns = fake.json("ndctl create-namespace -r region1 -m devdax -a 4K -s 64M")
    assert ns["align"] == 4096 and ns["size"] == 65011712
    ns = fake.json("ndctl create-namespace -r region1 -m fsdax -M mem -s 256M")
    assert ns["map"] == "mem" and ns["size"] == 266338304
    ns = fake.json("ndctl create-namespace -r region1 -m sector -l 512 -s 64M")
    assert ns["sector_size"] == 512
    uid = "6bfa5b2f-3b0c-4b93-9d3b-44e8b5d7a1a0"
    ns = fake.json(f"ndctl create-namespace -r region1 -m fsdax -s 32M -n myname -u {uid}")
    # ndctl shows the pfn device's uuid for fsdax; the namespace has ours
    assert ns["name"] == "myname"
    assert fake.sys(f"bus/nd/devices/{ns['dev']}/uuid") == uid + "\n"
    assert fake.sys(f"bus/nd/devices/{ns['dev']}/alt_name") == "myname\n"
    # no options: fsdax over all that is left of the first region ndctl picks
    ns = fake.json("ndctl create-namespace")
    region = "region" + ns["dev"][len("namespace"):].split(".")[0]
    assert ns["mode"] == "fsdax" and ns["size"] > 0
    assert region_sizes(fake, region) == (0, 0)


def test_reconfigure_with_e(fake):
    ns = fake.json("ndctl create-namespace -r region1 -m raw -s 256M")
    busy = fake.run(f"ndctl create-namespace -e {ns['dev']} -m fsdax")
    assert busy.returncode != 0 and "is active, specify --force" in busy.stderr
    ns2 = fake.json(f"ndctl create-namespace -f -e {ns['dev']} -m fsdax")
    assert ns2["mode"] == "fsdax" and ns2["dev"] == ns["dev"]
    ns3 = fake.json(f"ndctl create-namespace -f -e {ns['dev']} -m sector")
    assert ns3["mode"] == "sector"


def test_destroy(fake):
    fake.run("ndctl create-namespace -r region1 -m fsdax -s 256M", check=True)
    refused = fake.run("ndctl destroy-namespace namespace1.0")
    assert refused.returncode == 240 and "specify --force" in refused.stderr
    done = fake.run("ndctl destroy-namespace -f namespace1.0")
    assert done.returncode == 0 and "destroyed 1 namespace" in done.stderr
    assert region_sizes(fake) == (2 * GiB, 2 * GiB)
    assert not os.path.exists(os.path.join(fake.mnt, "dev", "pmem1"))
    assert fake.sys(f"{REGION1}/namespace1.0/size") == "0\n"
    assert fake.sys(f"{REGION1}/namespace1.0/uuid") == "\n"


def test_enable_disable(fake):
    fake.run("ndctl create-namespace -r region1 -m raw -s 128M", check=True)
    assert fake.run("ndctl disable-namespace namespace1.0").returncode == 0
    assert not os.path.exists(os.path.join(fake.mnt, "dev", "pmem1"))
    assert one(fake.json("ndctl list -Ni -n namespace1.0"))["state"] == "disabled"
    assert fake.run("ndctl enable-namespace namespace1.0").returncode == 0
    assert os.path.exists(os.path.join(fake.mnt, "dev", "pmem1"))
    assert fake.run("ndctl disable-region region1").returncode == 0
    assert fake.sys(f"{REGION1}/namespace_seed") == "\n"
    with pytest.raises(OSError) as e:
        fake.sys(f"{REGION1}/init_namespaces")
    assert e.value.errno == errno.ENXIO
    assert fake.run("ndctl enable-region region1").returncode == 0
    ns = one(fake.json("ndctl list -N -r region1"))
    assert ns["mode"] == "raw" and ns["size"] == 128 * MiB


def test_an_info_block_this_kernel_cannot_use_keeps_the_namespace_disabled(fake, tmp_path):
    """A pfn block of the namespace (signature, checksum, parent uuid all
    right) that nd_pfn_validate() refuses, here align 0 with data offset 0
    (1UL << ilog2(0) exceeds the namespace): nd_pmem_probe() fails with
    EOPNOTSUPP instead of exposing the namespace as a raw disk, and ndctl can
    still reconfigure it."""
    fake.run("ndctl create-namespace -r region1 -m raw -s 64M", check=True)
    ns_uuid = uuid.UUID(fake.sys("bus/nd/devices/namespace1.0/uuid").strip())
    sb = PfnSuperblock(signature=PFN_SIG, uuid=uuid.uuid4(), parent_uuid=ns_uuid,
                       version_major=1, version_minor=4, dataoff=0, npfns=1,
                       mode=PfnMode.PMEM, align=0, page_size=4096, page_struct_size=64)
    block = tmp_path / "pfn.sb"
    block.write_bytes(sb.encode())
    fake.run(f"dd if={block} of=/dev/pmem1 bs=4096 seek=1 conv=notrunc status=none", check=True)
    assert fake.run("ndctl disable-namespace namespace1.0").returncode == 0
    enable = fake.run("ndctl enable-namespace namespace1.0")
    assert enable.returncode != 0 and "failed to enable" in enable.stderr
    assert one(fake.json("ndctl list -Ni -n namespace1.0"))["state"] == "disabled"
    assert fake.refused("bus/nd/drivers/nd_pmem/bind", "namespace1.0") == errno.EOPNOTSUPP
    assert not os.path.exists(os.path.join(fake.mnt, "dev", "pmem1"))
    ns = one(fake.json("ndctl create-namespace -f -e namespace1.0 -m fsdax"))
    assert (ns["mode"], ns["align"]) == ("fsdax", 2 * MiB)


def test_fragmentation(fake):
    for size in ("256M", "512M", "256M"):
        fake.run(f"ndctl create-namespace -r region1 -m raw -s {size}", check=True)
    assert region_sizes(fake) == (1 * GiB, 1 * GiB)
    fake.run("ndctl destroy-namespace -f namespace1.1", check=True)   # the 512M in the middle
    assert region_sizes(fake) == (1536 * MiB, 1 * GiB)
    too_big = fake.run("ndctl create-namespace -r region1 -m raw -s 1280M")
    assert too_big.returncode == 237 and "No space left on device" in too_big.stderr
    ns = fake.json("ndctl create-namespace -r region1 -m raw -s 512M")
    assert int(fake.sys(f"bus/nd/devices/{ns['dev']}/resource"), 16) == 0x200000000 + 256 * MiB


def test_bad_input_through_ndctl(fake):
    misaligned = fake.run("ndctl create-namespace -r region1 -m raw -s 100M")
    assert misaligned.returncode == 234 and "misaligned" in misaligned.stderr
    assert region_sizes(fake) == (2 * GiB, 2 * GiB)


def test_down_up_keeps_namespaces(fake_factory, tmp_path):
    state = str(tmp_path / "kept")
    fake = fake_factory("default.toml", state)
    for cmd in ("-r region1 -m raw -s 128M", "-r region1 -m fsdax -s 256M -n fs",
                "-r region1 -m devdax -s 256M", "-r region2 -m sector -s 128M",
                "-r region0 -m fsdax -s 1G"):
        fake.run(f"ndctl create-namespace {cmd}", check=True)
    before = fake.json("ndctl list -N")
    fake.down()
    again = fake_factory("default.toml", state)
    after = again.json("ndctl list -N")
    key = lambda n: n["uuid"]
    assert sorted(after, key=key) == sorted(before, key=key)
