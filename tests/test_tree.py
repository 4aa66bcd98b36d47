"""Unit tests of the generic tree: kernfs order, link paths, attribute I/O."""

from __future__ import annotations

import errno

import pytest

from fakesys.errors import Errno
from fakesys.sysfs.tree import Dir, File, Link, Tree, name_hash


def test_readdir_is_kernfs_hash_order():
    # the real 6.1 kernel listed region0's namespaces in this order (ndctl
    # prints them reversed: 0.2, 0.4, 0.1, 0.3, 0.0 in the golden session)
    d = Dir("region0")
    for i in range(5):
        d.add(Dir(f"namespace0.{i}"))
    assert [n.name for n in d] == ["namespace0.0", "namespace0.3", "namespace0.1",
                                   "namespace0.4", "namespace0.2"]
    assert name_hash("nmem0") < name_hash("nmem1")


def test_links_are_relative_like_sysfs():
    tree = Tree()
    sys = tree.root.mkdir("sys")
    bus = sys.mkdir("bus").mkdir("nd")
    ndbus = sys.mkdir("devices").mkdir("ACPI0012:00").mkdir("ndbus0")
    glue = ndbus.mkdir("nd").mkdir("ndctl0")
    bus.mkdir("devices").add(Link("ndbus0", ndbus))
    glue.add(Link("device", ndbus))
    glue.add(Link("subsystem", bus))
    assert bus.walk("devices/ndbus0").readlink() == "../../../devices/ACPI0012:00/ndbus0"
    # a link to an ancestor climbs past it, as kernfs_get_target_path() does
    assert glue.get("device").readlink() == "../../../ndbus0"
    assert glue.get("subsystem").readlink() == "../../../../../bus/nd"


def test_inodes_and_listeners():
    tree = Tree()
    seen = []
    tree.listeners.append(lambda parent, name, removed: seen.append((name, removed)))
    d = tree.root.mkdir("sys")
    f = d.add(File("x", 0o444, lambda: "1\n"))
    assert tree.node(f.ino) is f
    d.remove("x")
    with pytest.raises(Errno) as e:
        tree.node(f.ino)
    assert e.value.errno == errno.ENOENT
    assert seen == [("sys", False), ("x", False), ("x", True)]


def test_attribute_writes_are_one_page_at_most():
    got = []
    f = File("a", 0o644, lambda: "", lambda data: got.append(data))
    assert f.write(b"x" * 4096) == 4096
    with pytest.raises(Errno) as e:
        f.write(b"x" * 4097)
    assert e.value.errno == errno.E2BIG
    assert got == [b"x" * 4096]


def test_resolve_follows_links_as_the_vfs_does():
    """One walk for every caller (the invariant checker, the fuzzer, the
    tests): ".." goes up, links are followed by their relative text, a
    loop or a link out of the tree resolves to nothing."""
    t = Tree()
    devices = t.root.mkdir("sys").mkdir("devices")
    region = devices.mkdir("ndbus0").mkdir("region0")
    size = File("size", 0o444, lambda: "1\n")
    region.add(size)
    bus = t.root.get("sys").mkdir("bus")
    bus.add(Link("region0", region))
    bus.add(Link("loop", bus))
    bus.add(Link("out", "/proc/self/fd"))
    assert t.root.resolve("sys/bus/region0/size") is size
    assert t.root.resolve("/sys/bus/region0/../../ndbus0/region0/size") is size
    assert t.root.resolve("sys/bus/loop/loop/region0") is region
    assert bus.resolve("../devices/ndbus0") is region.parent
    assert t.root.resolve("sys/bus/missing/size") is None
    assert t.root.resolve("sys/bus/out/0") is None
    bus.remove("loop")
    bus.add(Link("loop", bus.get("region0")))
    devices.add(Link("self", devices))
    assert t.root.resolve("sys/devices/self/self/self/ndbus0", max_links=2) is None
