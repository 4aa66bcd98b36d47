"""The dax bus in-process (no FUSE): dax regions, devices, drivers and hmem.

Each test boots a machine from an inline topology and writes sysfs
attributes the way daxctl and scripts do (value, then a NUL).  Refused
writes must raise the errno drivers/dax/bus.c returns and leave every
dax attribute as it was; the model invariants hold after every test.
"""

from __future__ import annotations

import errno

import pytest

from fakesys.errors import Errno
from fakesys.kernel.invariants import check
from fakesys.platform.machine import Machine
from fakesys.sysfs.tree import Dir, File, Link
from fakesys.platform.topology import parse
from test_model import exists, read, refused, resolve, write

MiB = 1 << 20
GiB = 1 << 30
HMEM = "devices/platform/hmem.0"
REGION = f"{HMEM}/dax_region"


def machine(kernel: str = "6.1", size: str = "512M", start: int = 0x80000000, target: int = 1,
            extra: str = "") -> Machine:
    return Machine(parse(f'kernel = "{kernel}"\n[[soft_reserved]]\nstart = {start:#x}\n'
                         f'size = "{size}"\ntarget_node = {target}\n{extra}'))


def dax_state(m: Machine) -> dict[str, str]:
    """Every readable attribute and link under the dax bus's devices and the region."""
    out: dict[str, str] = {}
    host = resolve(m, HMEM)
    stack = [(host, HMEM)]
    while stack:
        node, path = stack.pop()
        for child in node.children.values():
            p = f"{path}/{child.name}"
            if isinstance(child, Dir) and child.name != "power":
                stack.append((child, p))
            elif isinstance(child, Link):
                out[p] = child.readlink()
            elif isinstance(child, File) and child.mode & 0o444 and child.show is not None:
                try:
                    out[p] = child.read().decode()
                except Errno as e:
                    out[p] = f"!{e.errno}"
    return out


def mappings(m: Machine, dev: str) -> list[tuple[int, int, int]]:
    base = f"{HMEM}/{dev}"
    out, i = [], 0
    while exists(m, f"{base}/mapping{i}"):
        out.append(tuple(int(read(m, f"{base}/mapping{i}/{a}"), 16) for a in ("start", "end", "page_offset")))
        i += 1
    return out


def create(m: Machine, size: int, align: int | None = None, bind: bool = True) -> str:
    """What daxctl create-device writes, in its order."""
    write(m, f"{REGION}/create", "1")
    dev = read(m, f"{REGION}/seed").strip()
    if align is not None:
        write(m, f"{HMEM}/{dev}/align", hex(align))
    write(m, f"{HMEM}/{dev}/size", hex(size))
    if bind:
        write(m, "bus/dax/drivers/device_dax/new_id", dev)   # binds it already
        assert refused(m, "bus/dax/drivers/device_dax/bind", dev) == errno.EBUSY  # daxctl ignores this
    return dev


def disable(m: Machine, dev: str) -> None:
    driver = resolve(m, f"{HMEM}/{dev}/driver").name
    write(m, f"bus/dax/drivers/{driver}/remove_id", dev)
    write(m, f"bus/dax/drivers/{driver}/unbind", dev)


@pytest.fixture(autouse=True)
def _invariants(request):
    machines: list[Machine] = []
    orig = Machine.__init__

    def init(self, *a, **k):
        orig(self, *a, **k)
        machines.append(self)
    Machine.__init__ = init
    try:
        yield
    finally:
        Machine.__init__ = orig
    for m in machines:
        assert check(m.kernel) == []


# ---------------------------------------------------------------- boot

def test_hmem_boot_61_is_devdax():
    m = machine("6.1")
    assert read(m, f"{HMEM}/uevent") == "DRIVER=hmem\nMODALIAS=platform:hmem\n"
    assert read(m, f"{HMEM}/numa_node") == "1\n"
    assert resolve(m, f"{HMEM}/dax0.0/driver").name == "device_dax"
    assert read(m, f"{HMEM}/dax0.0/uevent") == \
        "MAJOR=252\nMINOR=0\nDEVNAME=dax0.0\nDRIVER=device_dax\nMODALIAS=dax:t0\n"
    assert mappings(m, "dax0.0") == [(0x80000000, 0x9fffffff, 0)]
    region = {n: read(m, f"{REGION}/{n}") for n in ("id", "size", "align", "available_size", "create", "seed")}
    assert region == {"id": "0\n", "size": "536870912\n", "align": "2097152\n", "available_size": "0\n",
                      "create": "\n", "seed": "\n"}
    modes = {c.name: c.mode for c in resolve(m, REGION).children.values()}
    assert modes == {"available_size": 0o444, "size": 0o444, "align": 0o400, "create": 0o644,
                     "seed": 0o444, "delete": 0o200, "id": 0o444}
    dev = {c.name: c.mode for c in resolve(m, f"{HMEM}/dax0.0").children.values() if isinstance(c, File)}
    assert dev == {"uevent": 0o644, "dev": 0o444, "modalias": 0o444, "size": 0o644, "mapping": 0o200,
                   "target_node": 0o444, "align": 0o644, "resource": 0o400, "numa_node": 0o444}
    assert resolve(m, "dev/char/252:0") is resolve(m, f"{HMEM}/dax0.0")
    assert read(m, "module/dax_hmem/parameters/region_idle") == "N\n"
    assert read(m, "module/device_dax/initstate") == "live\n"   # libkmod sees it loaded
    assert not exists(m, "devices/platform/hmem_platform.0")


def test_hmem_boot_newer_kernels_hand_the_device_to_kmem():
    m = machine("6.19")
    assert resolve(m, f"{HMEM}/dax0.0/driver").name == "kmem"
    assert resolve(m, "devices/platform/hmem_platform.0/driver").name == "hmem_platform"
    assert read(m, f"{HMEM}/dax0.0/memmap_on_memory") == "0\n"
    assert read(m, f"{HMEM}/dax0.0/modalias") == "dax:t0\n"


def test_region_idle_creates_an_empty_unbound_device():
    m = machine("6.19")
    write(m, "module/dax_hmem/parameters/region_idle", "Y")
    assert read(m, "module/dax_hmem/parameters/region_idle") == "Y\n"
    assert refused(m, "module/dax_hmem/parameters/region_idle", "maybe") == errno.EINVAL
    write(m, "bus/platform/drivers/hmem/unbind", "hmem.0")
    assert not exists(m, REGION)
    write(m, "bus/platform/drivers/hmem/bind", "hmem.0")
    assert read(m, f"{HMEM}/dax0.0/size") == "0\n"
    assert not exists(m, f"{HMEM}/dax0.0/driver")
    assert read(m, f"{REGION}/available_size") == f"{512 * MiB}\n"


def test_misaligned_soft_reserved_range_fails_probe():
    m = machine("6.1", size="511M")   # "hmem: probe of hmem.0 failed with error -12"
    assert not exists(m, f"{HMEM}/driver")
    assert not exists(m, REGION)
    assert m.kernel.dax.bus.devices == {}


def test_two_ranges_two_nodes():
    m = Machine(parse('kernel = "6.1"\n'
                      '[[soft_reserved]]\nstart = 0x100000000\nsize = "512M"\ntarget_node = 2\nnuma_node = 0\n'
                      '[[soft_reserved]]\nstart = 0x80000000\nsize = "512M"\ntarget_node = 1\n'))
    assert read(m, "devices/platform/hmem.0/numa_node") == "0\n"
    assert read(m, "devices/platform/hmem.0/dax0.0/target_node") == "2\n"
    assert read(m, "devices/platform/hmem.0/dax0.0/numa_node") == "0\n"
    assert read(m, "devices/platform/hmem.1/dax1.0/target_node") == "1\n"
    assert read(m, "devices/platform/hmem.1/dax1.0/resource") == "0x80000000\n"
    assert read(m, "devices/platform/hmem.1/dax1.0/dev") == "252:1\n"


# ---------------------------------------------------------------- the allocator

def test_create_until_full_first_fit():
    m = machine()
    disable(m, "dax0.0")
    write(m, f"{HMEM}/dax0.0/size", hex(256 * MiB))         # shrink in place
    assert mappings(m, "dax0.0") == [(0x80000000, 0x8fffffff, 0)]
    write(m, f"{HMEM}/dax0.0/size", "0")
    assert mappings(m, "dax0.0") == []
    assert read(m, f"{HMEM}/dax0.0/resource") == "0x80000000\n"   # no range: the region's start
    a = create(m, 256 * MiB)
    b = create(m, 128 * MiB)
    c = create(m, 100 * MiB, align=4096)
    assert (a, b, c) == ("dax0.1", "dax0.2", "dax0.3")
    avail = int(read(m, f"{REGION}/available_size"))
    assert avail == 28 * MiB
    d = create(m, avail)
    assert [mappings(m, x)[0][0] for x in (a, b, c, d)] == [0x80000000, 0x90000000, 0x98000000, 0x9e400000]
    assert read(m, f"{REGION}/create") == "dax0.4\n" and read(m, f"{REGION}/seed") == "\n"
    assert read(m, f"{HMEM}/{c}/align") == "4096\n"
    before = dax_state(m)
    assert refused(m, f"{REGION}/create", "1") == errno.ENOSPC
    assert dax_state(m) == before


def test_grow_extends_in_place_or_adds_a_range():
    m = machine()
    disable(m, "dax0.0")
    write(m, f"{HMEM}/dax0.0/size", hex(64 * MiB))
    write(m, f"{HMEM}/dax0.0/size", hex(128 * MiB))         # the space after it: extended
    assert mappings(m, "dax0.0") == [(0x80000000, 0x87ffffff, 0)]
    b = create(m, 64 * MiB, bind=False)
    write(m, f"{HMEM}/dax0.0/size", hex(192 * MiB))         # blocked by dax0.1: a second range
    assert mappings(m, "dax0.0") == [(0x80000000, 0x87ffffff, 0),
                                     (0x8c000000, 0x8fffffff, 128 * MiB // 4096)]
    write(m, f"{HMEM}/{b}/size", "0")                       # a hole in front of dax0.0's 2nd range
    write(m, f"{HMEM}/{b}/size", hex(32 * MiB))
    assert mappings(m, b) == [(0x88000000, 0x89ffffff, 0)]
    write(m, f"{HMEM}/dax0.0/size", hex(96 * MiB))          # shrink: last range first, then in place
    assert mappings(m, "dax0.0") == [(0x80000000, 0x85ffffff, 0)]
    assert read(m, f"{HMEM}/dax0.0/size") == f"{96 * MiB}\n"
    assert int(read(m, f"{REGION}/available_size")) == 512 * MiB - 96 * MiB - 32 * MiB


def test_mapping_ids_are_reused_lowest_first():
    m = machine()
    disable(m, "dax0.0")
    write(m, f"{HMEM}/dax0.0/size", "0")
    write(m, f"{HMEM}/dax0.0/mapping", "0x90000000-0x901fffff")
    write(m, f"{HMEM}/dax0.0/mapping", "80000000-801fffff\n")
    assert mappings(m, "dax0.0") == [(0x90000000, 0x901fffff, 0), (0x80000000, 0x801fffff, 512)]
    assert read(m, f"{HMEM}/dax0.0/resource") == "0x90000000\n"  # the first range, not the lowest
    write(m, f"{HMEM}/dax0.0/size", hex(2 * MiB))
    assert mappings(m, "dax0.0") == [(0x90000000, 0x901fffff, 0)]
    write(m, f"{HMEM}/dax0.0/size", hex(4 * MiB))   # first fit: the free space at the region's start
    assert mappings(m, "dax0.0") == [(0x90000000, 0x901fffff, 0), (0x80000000, 0x801fffff, 512)]
    write(m, f"{HMEM}/dax0.0/size", hex(6 * MiB))   # its last range is followed by free space: extended
    assert mappings(m, "dax0.0") == [(0x90000000, 0x901fffff, 0), (0x80000000, 0x803fffff, 512)]


# ---------------------------------------------------------------- refused writes

def test_size_errors_leave_state_alone():
    m = machine()
    before = dax_state(m)
    assert refused(m, f"{HMEM}/dax0.0/size", hex(256 * MiB)) == errno.EBUSY   # bound
    assert refused(m, f"{HMEM}/dax0.0/size", "12345") == errno.EINVAL         # unaligned
    assert refused(m, f"{HMEM}/dax0.0/size", hex(3 * MiB)) == errno.EINVAL    # 4K align: still 2M steps
    assert refused(m, f"{HMEM}/dax0.0/size", "lots") == errno.EINVAL
    assert refused(m, f"{HMEM}/dax0.0/size", "0x1" + "0" * 17) == errno.ERANGE
    assert dax_state(m) == before
    disable(m, "dax0.0")
    disabled = dax_state(m)
    assert refused(m, f"{HMEM}/dax0.0/size", hex(1 * GiB)) == errno.ENOSPC    # above available
    assert dax_state(m) == disabled


def test_align_errors():
    m = machine()
    dev = f"{HMEM}/dax0.0"
    assert refused(m, f"{dev}/align", "big") == errno.ENXIO       # sic: a parse error is ENXIO
    assert refused(m, f"{dev}/align", "8192") == errno.EINVAL
    assert refused(m, f"{dev}/align", "4096") == errno.EBUSY      # bound
    disable(m, "dax0.0")
    before = dax_state(m)
    assert refused(m, f"{dev}/align", hex(GiB)) == errno.EINVAL   # 512M is not 1G-aligned
    assert dax_state(m) == before
    write(m, f"{dev}/align", "4096")
    assert read(m, f"{dev}/align") == "4096\n"


def test_mapping_errors():
    m = machine()
    disable(m, "dax0.0")
    write(m, f"{HMEM}/dax0.0/size", hex(256 * MiB))
    before = dax_state(m)
    dev = f"{HMEM}/dax0.0/mapping"
    assert refused(m, dev, "0x80000000") == errno.EINVAL                 # no '-'
    assert refused(m, dev, "zz-0x9fffffff") == errno.EINVAL
    assert refused(m, dev, "0x80000000-0x801fffff") == errno.ENOMEM      # taken
    assert refused(m, dev, "0xa0000000-0xa01fffff") == errno.ENOMEM      # outside the region
    assert refused(m, dev, "0x90000000-0x90000fff") == errno.ENXIO       # 4K: misaligned (6.1)
    assert dax_state(m) == before
    newer = machine("6.19")
    disable(newer, "dax0.0")
    write(newer, f"{HMEM}/dax0.0/size", "0")
    write(newer, f"{HMEM}/dax0.0/mapping", "0x90000000-0x90000fff")      # 6.9+: accepted, ignored
    assert read(newer, f"{HMEM}/dax0.0/size") == "0\n"


def test_create_and_delete_errors():
    m = machine()
    disable(m, "dax0.0")
    write(m, f"{HMEM}/dax0.0/size", hex(256 * MiB))
    before = dax_state(m)
    assert refused(m, f"{REGION}/create", "2") == errno.EINVAL
    assert refused(m, f"{REGION}/create", "one") == errno.EINVAL
    assert refused(m, f"{REGION}/delete", "dax0.7") == errno.ENXIO
    assert refused(m, f"{REGION}/delete", "dax0.0") == errno.EBUSY     # not empty
    assert dax_state(m) == before                                       # refused: nothing changed
    write(m, f"{HMEM}/dax0.0/size", "0")
    assert refused(m, f"{REGION}/delete", "dax0.0") == errno.EBUSY     # id 0 stays
    dev = create(m, 64 * MiB)
    assert refused(m, f"{REGION}/delete", dev) == errno.EBUSY          # bound
    disable(m, dev)
    write(m, f"{HMEM}/{dev}/size", "0")
    write(m, f"{REGION}/delete", dev + "\n")
    assert not exists(m, f"{HMEM}/{dev}") and not exists(m, f"bus/dax/devices/{dev}")
    assert not exists(m, "dev/char/252:1")
    assert read(m, f"{REGION}/create") == "\n"
    assert create(m, 64 * MiB) == dev                                   # the id is free again


def test_seed_is_the_first_unprobed_created_device():
    m = machine()
    disable(m, "dax0.0")
    write(m, f"{HMEM}/dax0.0/size", hex(256 * MiB))
    write(m, f"{REGION}/create", "1")
    write(m, f"{REGION}/create", "1")
    assert read(m, f"{REGION}/seed") == "dax0.1\n" and read(m, f"{REGION}/create") == "dax0.2\n"
    assert read(m, f"{HMEM}/dax0.1/size") == "0\n" and mappings(m, "dax0.1") == []
    assert refused(m, "bus/dax/drivers/device_dax/bind", "dax0.1") == errno.ENXIO   # empty
    write(m, f"{HMEM}/dax0.2/size", hex(64 * MiB))
    write(m, "bus/dax/drivers/device_dax/bind", "dax0.2")
    assert read(m, f"{REGION}/seed") == "dax0.1\n"      # only the seed's own probe clears it
    write(m, f"{HMEM}/dax0.1/size", hex(64 * MiB))
    write(m, "bus/dax/drivers/device_dax/new_id", "dax0.1")   # new_id alone binds it
    assert resolve(m, f"{HMEM}/dax0.1/driver").name == "device_dax"
    assert read(m, f"{REGION}/seed") == "\n"
    assert refused(m, "bus/dax/drivers/device_dax/bind", "dax0.1") == errno.EBUSY


# ---------------------------------------------------------------- drivers

def test_driver_ids_and_matching_61():
    m = machine()
    drv = "bus/dax/drivers"
    for bad in ("dax0", "dax0.01", "dax0.1.2", "nope", "dax0.1x", " dax0.1"):
        assert refused(m, f"{drv}/kmem/new_id", bad) == errno.EINVAL, bad
    disable(m, "dax0.0")
    # 6.1: kmem matches only what new_id named
    assert refused(m, f"{drv}/kmem/bind", "dax0.0") == errno.ENODEV
    assert refused(m, f"{drv}/kmem/bind", "dax9.9") == errno.ENODEV
    write(m, f"{drv}/kmem/remove_id", "dax0.0")          # absent: fine
    write(m, f"{drv}/kmem/new_id", "dax0.0\n")           # attaches at once
    assert resolve(m, f"{HMEM}/dax0.0/driver").name == "kmem"
    assert exists(m, f"{drv}/kmem/dax0.0")
    assert refused(m, f"{drv}/device_dax/bind", "dax0.0") == errno.EBUSY
    assert refused(m, f"{drv}/device_dax/unbind", "dax0.0") == errno.ENODEV
    write(m, f"{drv}/kmem/remove_id", "dax0.0")
    write(m, f"{drv}/kmem/unbind", "dax0.0")
    assert not exists(m, f"{HMEM}/dax0.0/driver")
    write(m, f"{drv}/device_dax/bind", "dax0.0")         # match_always
    assert resolve(m, f"{HMEM}/dax0.0/driver").name == "device_dax"


def test_driver_matching_by_type_newer():
    m = machine("6.19")
    drv = "bus/dax/drivers"
    write(m, f"{drv}/kmem/unbind", "dax0.0")
    assert refused(m, f"{drv}/device_dax/bind", "dax0.0") == errno.ENODEV   # a kmem region
    write(m, f"{drv}/device_dax/new_id", "dax0.0")
    assert resolve(m, f"{HMEM}/dax0.0/driver").name == "device_dax"
    write(m, f"{drv}/device_dax/remove_id", "dax0.0")
    write(m, f"{drv}/device_dax/unbind", "dax0.0")
    write(m, "bus/dax/drivers_probe", "dax0.0")                             # back to kmem by type
    assert resolve(m, f"{HMEM}/dax0.0/driver").name == "kmem"


def test_kmem_refusals():
    m = machine(target=-1)
    assert not exists(m, f"{HMEM}/dax0.0/target_node")       # hidden when < 0
    disable(m, "dax0.0")
    write(m, "bus/dax/drivers/kmem/new_id", "dax0.0")
    assert refused(m, "bus/dax/drivers/kmem/bind", "dax0.0") == errno.EINVAL   # no target node
    small = machine()
    disable(small, "dax0.0")
    write(small, f"{HMEM}/dax0.0/size", hex(64 * MiB))       # less than a 128M memory block
    write(small, "bus/dax/drivers/kmem/new_id", "dax0.0")    # new_id swallows the probe error
    assert refused(small, "bus/dax/drivers/kmem/bind", "dax0.0") == errno.EINVAL
    assert not exists(small, f"{HMEM}/dax0.0/driver")


def test_region_host_unbind_takes_everything_down():
    m = machine()
    disable(m, "dax0.0")
    write(m, f"{HMEM}/dax0.0/size", hex(256 * MiB))
    create(m, 64 * MiB)
    before = dax_state(m)
    assert refused(m, "devices/platform/hmem.0/dax0.0/size", "zz") == errno.EINVAL
    write(m, "bus/platform/drivers/hmem/unbind", "hmem.0")
    assert m.kernel.dax.bus.devices == {}
    assert not exists(m, REGION) and not exists(m, "dev/char/252:0")
    assert m.kernel.dax.minors == set()
    write(m, "bus/platform/drivers/hmem/bind", "hmem.0")   # back as at boot
    assert dax_state(m) == dax_state(machine()) != before


def test_size_mapping_align_need_an_enabled_region():
    """A store racing the region host's unbind finds no driver: ENXIO."""
    m = machine()
    disable(m, "dax0.0")
    dev = m.kernel.dax.bus.devices["dax0.0"]
    host = dev.region.host
    saved, host.driver = host.driver, None
    try:
        for attr, value in (("size", "0"), ("mapping", "0x80000000-0x801fffff"), ("align", "4096")):
            with pytest.raises(Errno) as e:
                getattr(dev, f"{attr}_store")(value)
            assert e.value.errno == errno.ENXIO, attr
    finally:
        host.driver = saved


# ---------------------------------------------------------------- static regions (dax_pmem)

STATIC = """kernel = "6.1"
[[bus]]
type = "nfit"
[[bus.dimm]]
name = "nvdimm0"
handle = 1
size = "1G"
labels = "v1.1"
[[bus.region]]
spa = 0x100000000
size = "1G"
dimms = ["nvdimm0"]
"""


def test_static_region_from_a_devdax_namespace():
    from test_model import create as nd_create
    m = Machine(parse(STATIC))
    nd_create(m, "region0", 256 * MiB, "devdax")
    claim = next(d for d in m.kernel.nd.bus.devices.values() if d.name.startswith("dax0.") and d.driver)
    base = f"bus/nd/devices/{claim.name}"
    names = sorted(c.name for c in resolve(m, f"{base}/dax_region").children.values())
    assert names == ["align", "id", "size"]
    dev = f"{base}/dax0.0"
    assert resolve(m, f"{dev}/size").mode == 0o444 and resolve(m, f"{dev}/align").mode == 0o444
    assert not exists(m, f"{dev}/mapping")
    assert resolve(m, f"{dev}/driver").name == "device_dax"
    assert read(m, f"{dev}/mapping0/page_offset") == "0x0\n"
    start = int(read(m, f"{dev}/resource"), 16)
    assert start == int(read(m, f"{dev}/mapping0/start"), 16)
    # unbinding the claim removes the region and its device
    write(m, "bus/nd/drivers/dax_pmem/unbind", claim.name)
    assert not exists(m, f"{base}/dax_region") and "dax0.0" not in m.kernel.dax.bus.devices
