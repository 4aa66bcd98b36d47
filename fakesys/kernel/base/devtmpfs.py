"""devtmpfs: the /dev entries of the emulated devices.

Served in the same tree as /sys under ``dev/``.  A block device whose
driver gave it media is a regular file of the disk's size that reads and
writes the media (a FUSE file cannot be a usable device node: see
mechanism.md).  A character device gets a node only when the kernel's
char device number provider backed it with a host node (``DevNode.target``,
e.g. ``pts/3``): then the entry is a symlink to that node, which carries
the numbers published in sysfs.  The launcher binds the host's basic nodes
(null, zero, tty, pts, ...) over the placeholders this module creates.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fakesys.errors import Errno
from fakesys.sysfs.tree import Blob, DeviceNode, Dir, File, Link

if TYPE_CHECKING:
    from fakesys.kernel.base.core import Device
    from fakesys.kernel.kernel import Kernel



@dataclass
class DevNode:
    """A /dev entry as devtmpfs would create it.

    ``target``, when set, is the path (relative to /dev) of a host node
    that stands for this one (see fs/char_dev.py's ChrdevNumbers).
    """

    name: str
    kind: str  # "c" or "b"
    devt: tuple[int, int]
    device: "Device"
    target: str | None = None


def devtmpfs_create_node(kernel: "Kernel", node: DevNode) -> None:
    """The node appears; whoever serves /dev is told."""
    kernel.devnodes[node.name] = node
    for cb in kernel.devnode_listeners:
        cb(node, False)


def devtmpfs_delete_node(kernel: "Kernel", name: str) -> None:
    node = kernel.devnodes.pop(name, None)
    if node is not None:
        for cb in kernel.devnode_listeners:
            cb(node, True)


HOST_NODES = ("null", "zero", "full", "random", "urandom", "tty", "ptmx")
HOST_DIRS = ("pts", "shm")
STD_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
             "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}


def setup(kernel: "Kernel") -> None:
    dev = kernel.dev
    for name in HOST_NODES:
        dev.add(File(name, 0o666, lambda: b"", lambda data: None, size=0))
    for name in HOST_DIRS:
        dev.mkdir(name)
    for name, target in STD_LINKS.items():
        dev.add(Link(name, target))
    kernel.devnode_listeners.append(lambda node, removed: _changed(dev, node, removed))


def _changed(dev: Dir, node: DevNode, removed: bool) -> None:
    if removed:
        dev.remove(node.name)
        return
    media = getattr(node.device, "media", None)
    if node.target is not None:
        dev.add(Link(node.name, node.target))
    elif node.kind == "b" and media is not None:
        device = node.device
        writable = getattr(device, "writable_media", lambda: True)
        dev.add(Blob(node.name, 0o660, lambda: media.size, media.read,
                     lambda off, data: _write(media, writable, off, data)))
    elif node.kind == "b":
        dev.add(Blob(node.name, 0o660, lambda: node.device.params.capacity() * 512,
                     _no_data, _no_data_write))
    else:
        dev.add(DeviceNode(node.name, "c", *node.devt))


def _write(media, writable, offset: int, data: bytes) -> int:
    if not writable():
        raise Errno(errno.EROFS, "read-only disk")
    return media.write(offset, data)


def _no_data(offset: int, length: int) -> bytes:
    raise Errno(errno.EIO, "the BTT data path is not emulated")


def _no_data_write(offset: int, data: bytes) -> int:
    return len(_no_data(offset, len(data)))
