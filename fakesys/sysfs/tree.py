"""The tree a fake serves: /sys, /dev and /proc, as directories, attribute
files, symlinks, byte blobs and device nodes.

This is the generic half of sysfs (the kernel's kernfs) and of the other
pseudo filesystems a fake shows.  It knows nothing of NVDIMMs: the
emulated driver core creates and removes nodes here the way the kernel's
driver core calls sysfs, devtmpfs adds /dev entries, mm adds /proc files,
and the FUSE server walks it.  Three kernel behaviours live here because
every tool depends on them:

* readdir order is the kernfs order (name hash, then name), not the
  alphabetical one; ndctl lists devices in (reverse) readdir order;
* an attribute's content is produced by its ``show`` at read time and a
  write is handed to ``store`` at once, so every read is fresh;
* symlinks are stored as node references and read back as relative paths,
  so they stay right wherever the tree is mounted.
"""

from __future__ import annotations

import errno
import functools
from typing import Callable, Iterator

from fakesys.errors import Errno

#: Bytes a sysfs attribute's show() may fill and a write may carry, and
#: the size stat() reports for an attribute.  Linux hands show/store one
#: page, so this equals the emulated kernel's PAGE_SIZE; it is named for
#: what it is here because this tree layer must not import the emulated
#: kernel (fakesys.kernel.sizes), and the buffer, not the page, is the fact
#: this layer enforces.
SYSFS_BUFFER_SIZE = 4096

Show = Callable[[], "str | bytes"]
Store = Callable[[bytes], None]
Listener = Callable[["Dir", str, bool], None]

_MASK64 = (1 << 64) - 1
_GOLDEN_RATIO_64 = 0x61C8864680B583EB


@functools.cache  # the same few hundred names recur across every device
def name_hash(name: str) -> int:
    """kernfs_name_hash(): the key kernfs sorts a directory's children by."""
    h = 0
    for c in name.encode():
        h = ((h + (c << 4) + (c >> 4)) * 11) & _MASK64
    h = ((h * _GOLDEN_RATIO_64) & _MASK64) >> 32
    h &= 0x7FFFFFFF
    if h < 2:
        h += 2
    if h >= 0x7FFFFFFF:
        h = 0x7FFFFFFE
    return h


class Node:
    """One entry of the tree; ``ino`` is its inode number, stable while attached."""

    mode = 0

    def __init__(self, name: str) -> None:
        if not name or "/" in name or "\0" in name or name in (".", ".."):
            raise ValueError(f"bad sysfs name {name!r}")
        self.name = name
        self.parent: Dir | None = None
        self.ino = 0
        self.hash = name_hash(name)

    @property
    def attached(self) -> bool:
        return self.ino != 0

    def path(self) -> str:
        """Path from the tree root, e.g. ``sys/bus/nd``."""
        parts = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            parts.append(node.name)
            node = node.parent
        return "/".join(reversed(parts))


class Dir(Node):
    mode = 0o755

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.children: dict[str, Node] = {}
        self._tree: Tree | None = None
        self.subdirs = 0  # kernfs counts them: a directory's st_nlink is 2 + subdirs

    def __iter__(self) -> Iterator[Node]:
        """Children in kernfs order (hash, then name)."""
        return iter(sorted(self.children.values(), key=lambda n: (n.hash, n.name)))

    def get(self, name: str) -> Node | None:
        return self.children.get(name)

    def add(self, node: "Node") -> "Node":
        """Attach ``node``; a name that exists already is the kernel's EEXIST."""
        if node.name in self.children:
            raise Errno(errno.EEXIST, f"{self.path()}/{node.name} exists")
        node.parent = self
        self.children[node.name] = node
        self.subdirs += isinstance(node, Dir)
        tree = self.tree
        if tree is not None:
            tree._attach(node)
            tree._notify(self, node.name, False)
        return node

    def remove(self, name: str) -> None:
        """Detach a child (recursively); a missing name is ignored like kernfs_remove_by_name."""
        node = self.children.pop(name, None)
        if node is None:
            return
        self.subdirs -= isinstance(node, Dir)
        tree = self.tree
        if tree is not None:
            tree._detach(node)
            tree._notify(self, name, True)

    def mkdir(self, name: str) -> "Dir":
        node = self.children.get(name)
        if isinstance(node, Dir):
            return node
        return self.add(Dir(name))  # type: ignore[return-value]

    def walk(self, path: str) -> Node | None:
        """The node at ``path`` below this one, links not followed."""
        node: Node | None = self
        for part in path.strip("/").split("/"):
            if not part:
                continue
            if not isinstance(node, Dir):
                return None
            node = node.children.get(part)
        return node

    def resolve(self, path: str, max_links: int = 40) -> Node | None:
        """The node ``path`` names from here as the VFS finds it: ".." goes
        up, every link met on the way is followed by its text (as the
        kernel's relative sysfs links are), None when nothing is there or
        the links go round (ELOOP)."""
        node: Node | None = self
        stack = [p for p in reversed(path.split("/")) if p and p != "."]
        while stack and node is not None:
            part = stack.pop()
            if part == "..":
                node = node.parent or node
                continue
            child = node.children.get(part) if isinstance(node, Dir) else None
            if isinstance(child, Link):
                max_links -= 1
                if max_links < 0 or not isinstance(child.target, Node):
                    return None             # a loop, or a link that leaves the tree
                stack += [p for p in reversed(child.readlink().split("/")) if p and p != "."]
                continue
            node = child
        return node

    @property
    def tree(self) -> "Tree | None":
        node: Node | None = self
        while node is not None and node.parent is not None:
            node = node.parent
        return node._tree if isinstance(node, Dir) else None


class File(Node):
    """An attribute: ``show`` renders it, ``store`` takes a write.

    Open checks follow kernfs_fop_open: a file without any read bit cannot
    be opened for reading and one without any write bit cannot be opened
    for writing, whoever the caller is (root included).
    """

    def __init__(self, name: str, mode: int, show: Show | None = None,
                 store: Store | None = None, size: int = SYSFS_BUFFER_SIZE) -> None:
        super().__init__(name)
        self.mode = mode
        self.show = show
        self.store = store
        self.size = size
        self.event = 0      # kernfs_open_node->event: bumped by notify()

    def notify(self) -> None:
        """sysfs_notify(): wake pollers of this attribute (POLLERR|POLLPRI)."""
        self.event += 1
        tree = self.parent.tree if self.parent is not None else None
        if tree is not None:
            for listener in tree.poll_listeners:
                listener(self)

    def read(self) -> bytes:
        if self.show is None:
            raise Errno(errno.EIO, "attribute has no show")
        data = self.show()
        # a str may hold bytes a store kept as written (surrogateescape)
        return data.encode("utf-8", "surrogateescape") if isinstance(data, str) else bytes(data)

    def write(self, data: bytes) -> int:
        """sysfs write: at most one page, handed to ``store`` in one call."""
        if len(data) > SYSFS_BUFFER_SIZE:
            raise Errno(errno.E2BIG, "sysfs writes are limited to one page")
        if not data:
            return 0  # sysfs_kf_write(): an empty write reaches no store
        if self.store is None:
            raise Errno(errno.EIO, "attribute has no store")
        self.store(data)
        return len(data)


class Blob(Node):
    """A file read and written at offsets, like a bin_attribute or media.

    ``size`` is asked at every stat, ``pread``/``pwrite`` take offsets.
    """

    def __init__(self, name: str, mode: int, size: Callable[[], int],
                 pread: Callable[[int, int], bytes],
                 pwrite: Callable[[int, bytes], int] | None = None) -> None:
        super().__init__(name)
        self.mode = mode
        self.size = size
        self._pread = pread
        self._pwrite = pwrite

    def read(self, offset: int, length: int) -> bytes:
        return self._pread(offset, length)

    def write(self, offset: int, data: bytes) -> int:
        if self._pwrite is None:
            raise Errno(errno.EACCES, "read-only")
        return self._pwrite(offset, data)


class DeviceNode(Node):
    """A device special file (what devtmpfs creates): ``kind`` "c" or "b".

    Served only on a ``nodev`` mount, so opening it never reaches a host
    driver; ``lstat`` shows the type and numbers tools check.
    """

    def __init__(self, name: str, kind: str, major: int, minor: int, mode: int = 0o600) -> None:
        super().__init__(name)
        self.kind = kind
        self.major = major
        self.minor = minor
        self.mode = mode


class Link(Node):
    mode = 0o777

    def __init__(self, name: str, target: "Node | str") -> None:
        super().__init__(name)
        self.target = target

    def readlink(self) -> str:
        """The target relative to the link's directory, as sysfs writes it.

        Like kernfs_get_target_path(): climb from the link's directory to
        the nearest ancestor of the target's *parent*, then descend.  So a
        link to an ancestor reads ``../../../ndbus0``, not ``../..``.
        A string target is returned as it is (e.g. ``/proc/self/fd``).
        """
        if isinstance(self.target, str):
            return self.target
        assert self.parent is not None
        above = set()
        node: Node | None = self.target.parent
        while node is not None:
            above.add(id(node))
            node = node.parent
        ups = 0
        base: Node | None = self.parent
        while base is not None and id(base) not in above:
            ups += 1
            base = base.parent
        down = []
        node = self.target
        while node is not None and node is not base:
            down.append(node.name)
            node = node.parent
        return "../" * ups + "/".join(reversed(down))


class Tree:
    """The root of a served tree, with an inode table and change listeners."""

    ROOT_INO = 1

    def __init__(self) -> None:
        self.root = Dir("root")
        self.root._tree = self
        self.root.ino = self.ROOT_INO
        self.inodes: dict[int, Node] = {self.ROOT_INO: self.root}
        self._next_ino = self.ROOT_INO + 1
        self.listeners: list[Listener] = []
        self.poll_listeners: list[Callable[["File"], None]] = []
        # told of each node that gains (True) or loses (False) its inode
        self.inode_listeners: list[Callable[[Node, bool], None]] = []

    def _attach(self, node: Node) -> None:
        node.ino = self._next_ino
        self._next_ino += 1
        self.inodes[node.ino] = node
        for listener in self.inode_listeners:
            listener(node, True)
        if isinstance(node, Dir):
            for child in node.children.values():
                self._attach(child)

    def _detach(self, node: Node) -> None:
        for listener in self.inode_listeners:
            listener(node, False)
        self.inodes.pop(node.ino, None)
        node.ino = 0
        if isinstance(node, Dir):
            for child in node.children.values():
                self._detach(child)

    def _notify(self, parent: Dir, name: str, removed: bool) -> None:
        for listener in self.listeners:
            listener(parent, name, removed)

    def node(self, ino: int) -> Node:
        try:
            return self.inodes[ino]
        except KeyError:
            raise Errno(errno.ENOENT, f"stale inode {ino}") from None
