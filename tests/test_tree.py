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
