"""Character device numbers (fs/char_dev.c) and who may hand them out instead.

register_chrdev(0, name) gives a driver a dynamic major, counting down
from 254 as the kernel does.  A :class:`ChrdevNumbers` provider installed
on the kernel may replace those numbers with ones of real host nodes (the
daemon does, so that tools can fstat the nodes they open).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from fakesys.kernel.base import devtmpfs
from fakesys.kernel.base.devtmpfs import DevNode
from fakesys.sysfs.tree import Link

if TYPE_CHECKING:
    from fakesys.kernel.base.core import Device
    from fakesys.kernel.kernel import Kernel

# The dynamic character majors a Debian 6.1 x86-64 guest hands out to these
# drivers (register_chrdev(0, ...) counts down from 254 in probe order).
DYNAMIC_MAJORS = {"dax": 252, "ndctl": 246, "dimmctl": 245}


class ChrdevNumbers(Protocol):
    """Who hands out character device numbers instead of register_chrdev().

    Without one, a char device keeps the number its driver gave it (the
    6.1 majors of DYNAMIC_MAJORS).  The daemon installs one so that the
    nodes of the devices it serves are real host char devices whose
    numbers the tools can fstat: ``claim`` returns the (major, minor) to
    publish in ``dev``/``uevent``/``/sys/dev/char`` and the path, relative
    to /dev, of the host node that stands for the device, or None to leave
    the device alone; ``release`` gives the number back when the device
    goes away.  ``name`` is the chrdev region name (e.g. "dimmctl").
    """

    def claim(self, dev: "Device", name: str) -> tuple[tuple[int, int], str] | None: ...

    def release(self, dev: "Device") -> None: ...


def chrdev_major(kernel: "Kernel", name: str) -> int:
    """register_chrdev(0, name): dynamic majors are handed out downwards from 254."""
    majors = kernel.chrdev_majors
    if name not in majors:
        majors[name] = min(majors.values()) - 1
    return majors[name]


def set_chrdev_numbers(kernel: "Kernel", numbers: ChrdevNumbers | None) -> None:
    """Install (or remove) the char device number provider.

    Devices registered already are renumbered: their ``dev`` file,
    ``/sys/dev/char`` link and devnode move to the new numbers.  Meant
    for a machine that is not yet served (nobody holds a node open).
    """
    nodes = [n for n in kernel.devnodes.values() if n.kind == "c"]
    for node in nodes:
        chrdev_unpublish(node.device)
    kernel.chrdev_numbers = numbers
    for node in nodes:
        chrdev_publish(node.device)


def _claim(dev: "Device") -> str | None:
    """Let the provider number a char device; returns the node's target."""
    kernel = dev.kernel
    if kernel.chrdev_numbers is None or dev.devt is None:
        return None
    names = {major: name for name, major in kernel.chrdev_majors.items()}
    name = names.get(dev.devt[0])
    got = kernel.chrdev_numbers.claim(dev, name) if name is not None else None
    if got is None:
        return None
    kernel.chrdev_claimed[dev] = dev.devt
    dev.devt = got[0]
    return got[1]


def _release(dev: "Device") -> None:
    kernel = dev.kernel
    own = kernel.chrdev_claimed.pop(dev, None)
    if own is not None:
        dev.devt = own
        assert kernel.chrdev_numbers is not None
        kernel.chrdev_numbers.release(dev)


def chrdev_publish(dev: "Device") -> None:
    """A char device's ``/sys/dev/char`` link and devnode (cdev_device_add)."""
    target = _claim(dev)
    assert dev.devt is not None
    dev.kernel.sys_dev["c"].add(Link(f"{dev.devt[0]}:{dev.devt[1]}", dev.kobj))
    devtmpfs.devtmpfs_create_node(dev.kernel, DevNode(dev.devnode(), "c", dev.devt, dev, target))


def chrdev_unpublish(dev: "Device") -> None:
    assert dev.devt is not None
    dev.kernel.sys_dev["c"].remove(f"{dev.devt[0]}:{dev.devt[1]}")
    devtmpfs.devtmpfs_delete_node(dev.kernel, dev.devnode())
    _release(dev)
