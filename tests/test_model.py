"""The emulated kernel in-process (no FUSE): sysfs writes as ndctl makes them,
with the invariants checked after every step."""

from __future__ import annotations

import errno
import os
import uuid as uuidlib

import pytest

from fakesys.errors import Errno
from fakesys.kernel.invariants import check
from fakesys.platform.machine import Machine
from fakesys.sysfs.tree import File, Node
from fakesys.platform.topology import load

DEVICES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "devices")


def resolve(m: Machine, path: str) -> Node:
    """Walk a /sys path, following links like the VFS."""
    node = m.tree.root.resolve("sys/" + path.strip("/").removeprefix("sys/"))
    if node is None:
        raise FileNotFoundError(path)
    return node


def read(m: Machine, path: str) -> str:
    node = resolve(m, path)
    assert isinstance(node, File)
    return node.read().decode()


def write(m: Machine, path: str, value: str) -> None:
    node = resolve(m, path)
    assert isinstance(node, File)
    node.write(value.encode() + b"\0")


def refused(m: Machine, path: str, value: str) -> int:
    """The errno a write is refused with (it must be refused)."""
    with pytest.raises(Errno) as e:
        write(m, path, value)
    return e.value.errno


def exists(m: Machine, path: str) -> bool:
    try:
        resolve(m, path)
        return True
    except FileNotFoundError:
        return False


def create(m: Machine, region: str, size: int, mode: str = "raw") -> str:
    """What ndctl create-namespace writes, in its order."""
    ns = next(n for n in read(m, f"bus/nd/devices/{region}/namespace_seed").split())
    base = f"bus/nd/devices/{ns}"
    write(m, f"{base}/uuid", str(__import__("uuid").uuid4()))
    write(m, f"{base}/alt_name", "")
    write(m, f"{base}/size", hex(size))
    write(m, f"{base}/sector_size", "512")
    write(m, f"{base}/holder_class", {"raw": "", "fsdax": "pfn", "devdax": "dax"}[mode])
    if mode == "raw":
        write(m, "bus/nd/drivers/nd_pmem/bind", ns)
    else:
        kind = {"fsdax": "pfn", "devdax": "dax"}[mode]
        seed = read(m, f"bus/nd/devices/{region}/{kind}_seed").strip()
        write(m, f"bus/nd/devices/{seed}/uuid", str(__import__("uuid").uuid4()))
        write(m, f"bus/nd/devices/{seed}/mode", "pmem")
        write(m, f"bus/nd/devices/{seed}/align", "2097152")
        write(m, f"bus/nd/devices/{seed}/namespace", ns)
        write(m, f"bus/nd/drivers/{'nd_pmem' if kind == 'pfn' else 'dax_pmem'}/bind", seed)
    assert check(m.kernel) == []
    return ns


@pytest.fixture
def machine(tmp_path):
    return Machine(load(os.path.join(DEVICES, "default.toml")), str(tmp_path))


def test_boot_is_consistent(machine):
    assert check(machine.kernel) == []


def test_create_destroy_keeps_invariants(machine):
    a = create(machine, "region1", 256 << 20)
    b = create(machine, "region1", 256 << 20, "fsdax")
    create(machine, "region0", 1 << 30, "devdax")
    assert read(machine, "bus/nd/devices/region1/available_size") == f"{(2 << 30) - (512 << 20)}\n"
    assert read(machine, f"bus/nd/devices/{b}/mode") == "memory\n"
    write(machine, "bus/nd/drivers/nd_pmem/unbind", a)
    write(machine, f"bus/nd/devices/{a}/size", "0")
    assert check(machine.kernel) == []
    assert read(machine, "bus/nd/devices/region1/available_size") == f"{(2 << 30) - (256 << 20)}\n"


def test_uuid_rename_reaps_the_old_labels(machine):
    """A renamed namespace's labels carry only the new uuid on every DIMM:
    the store's label update reaps the old uuid's labels in its first pass
    (the production path of label.pmem_namespace_label_update's ``reap``)."""
    ns = read(machine, "bus/nd/devices/region1/namespace_seed").strip()
    base = f"bus/nd/devices/{ns}"
    old, new = uuidlib.uuid4(), uuidlib.uuid4()
    write(machine, f"{base}/uuid", str(old))
    write(machine, f"{base}/size", hex(128 << 20))
    write(machine, f"{base}/uuid", str(new))
    assert read(machine, f"{base}/uuid") == f"{new}\n"
    # the checker reads every DIMM's label area from the media: a label of
    # the old uuid left behind is "a label that belongs to no namespace"
    assert check(machine.kernel) == []


def test_region_reenable_rebuilds_from_labels(machine):
    create(machine, "region1", 128 << 20)
    create(machine, "region1", 256 << 20, "fsdax")
    write(machine, "bus/nd/drivers/nd_region/unbind", "region1")
    assert read(machine, "bus/nd/devices/region1/namespace_seed") == "\n"
    write(machine, "bus/nd/drivers/nd_region/bind", "region1")
    assert check(machine.kernel) == []
    assert read(machine, "bus/nd/devices/region1/btt_seed") == "btt1.0\n"
    # the fsdax namespace came back with an auto-detected pfn claim, bound
    assert read(machine, "bus/nd/devices/pfn1.1/namespace") == "namespace1.1\n"
    assert read(machine, "bus/nd/devices/namespace1.1/mode") == "memory\n"


def test_rejected_writes_change_nothing(machine):
    ns = "namespace2.0"
    before = check(machine.kernel)
    for path, value, err in [(f"{ns}/size", "0x1000000", errno.ENXIO), (f"{ns}/uuid", "junk", errno.EINVAL),
                             ("region2/align", "0x3000", errno.EINVAL)]:
        with pytest.raises(Errno) as e:
            write(machine, f"bus/nd/devices/{path}", value)
        assert e.value.errno == err
    assert check(machine.kernel) == before == []
