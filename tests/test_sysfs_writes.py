"""Raw sysfs writes get the kernel's errno and leave the state unchanged.

ndctl catches most bad input itself, so these write the attributes
directly through the mount, as a script or a buggy tool would.
"""

from __future__ import annotations

import errno
import os

import pytest

from conftest import needs_root

pytestmark = needs_root

NS = "bus/nd/devices/namespace1.0"
REGION = "bus/nd/devices/region1"
UUID = "6bfa5b2f-3b0c-4b93-9d3b-44e8b5d7a1a0"


def snapshot(fake) -> dict[str, str]:
    names = ("size", "uuid", "alt_name", "sector_size", "holder", "mode")
    state = {n: fake.sys(f"{NS}/{n}") for n in names}
    state.update({n: fake.sys(f"{REGION}/{n}") for n in ("available_size", "namespace_seed")})
    return state


def test_junk_uuid(fake):
    before = snapshot(fake)
    assert fake.refused(f"{NS}/uuid", "not-a-uuid\n") == errno.EINVAL
    assert fake.refused(f"{NS}/uuid", "6bfa5b2f-3b0c\n") == errno.EINVAL
    assert snapshot(fake) == before


def test_size_rules(fake):
    before = snapshot(fake)
    # no uuid yet: ENXIO
    assert fake.refused(f"{NS}/size", "0x10000000\n") == errno.ENXIO
    fake.write(f"{NS}/uuid", UUID + "\n")
    with_uuid = snapshot(fake)
    assert with_uuid["uuid"] == UUID + "\n"
    assert fake.refused(f"{NS}/size", "12345\n") == errno.EINVAL          # not region-aligned
    assert fake.refused(f"{NS}/size", "0x100000000\n") == errno.ENOSPC    # 4G on a 2G region
    assert fake.refused(f"{NS}/size", "lots\n") == errno.EINVAL
    assert snapshot(fake) == with_uuid
    assert before["available_size"] == with_uuid["available_size"]


def test_size_of_enabled_namespace(fake):
    fake.run("ndctl create-namespace -r region1 -m raw -s 128M", check=True)
    before = snapshot(fake)
    assert fake.refused(f"{NS}/size", "0x20000000\n") == errno.EBUSY
    assert fake.refused(f"{NS}/uuid", UUID + "\n") == errno.EBUSY
    assert snapshot(fake) == before


def test_bind_to_wrong_driver(fake):
    before = snapshot(fake)
    for drv in ("nvdimm", "nd_region", "dax_pmem"):
        assert fake.refused(f"bus/nd/drivers/{drv}/bind", "namespace1.0\n") == errno.ENODEV
    assert fake.refused("bus/nd/drivers/nd_pmem/bind", "namespace9.9\n") == errno.ENODEV
    # a zero-size namespace does not probe
    assert fake.refused("bus/nd/drivers/nd_pmem/bind", "namespace1.0\n") == errno.ENODEV
    assert fake.refused("bus/nd/drivers/nd_pmem/unbind", "namespace1.0\n") == errno.ENODEV
    assert snapshot(fake) == before
    assert not os.path.exists(os.path.join(fake.mnt, "sys/bus/nd/drivers/nd_bus/bind"))


def test_region_align_rules(fake):
    assert fake.refused(f"{REGION}/align", "0x3000\n") == errno.EINVAL    # not a power of 2
    assert fake.refused(f"{REGION}/align", "0x800\n") == errno.EINVAL     # below PAGE_SIZE
    assert fake.sys(f"{REGION}/align") == "0x1000000\n"
    fake.write(f"{REGION}/align", "0x200000\n")
    assert fake.sys(f"{REGION}/align") == "0x200000\n"


def test_write_permissions_and_limits(fake):
    with pytest.raises(OSError) as e:
        os.open(os.path.join(fake.mnt, "sys", REGION, "size"), os.O_WRONLY)
    assert e.value.errno == errno.EACCES
    with pytest.raises(OSError) as e:
        os.open(os.path.join(fake.mnt, "sys/bus/nd/drivers/nd_pmem/bind"), os.O_RDONLY)
    assert e.value.errno == errno.EACCES
    assert fake.refused(f"{NS}/alt_name", "x" * 5000) == errno.E2BIG
    assert fake.refused(f"{NS}/alt_name", "x" * 64 + "\n") in (errno.EINVAL, errno.ENXIO)
