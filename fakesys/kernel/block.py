"""Gendisks: class "block" devices, their queue/ and integrity/ groups and
their backing_dev_info, as block/genhd.c, blk-sysfs.c and mm/backing-dev.c
show them for a pmem disk.  ``/sys/block/NAME`` links and the /dev node
come with the device.

The driver that creates a disk (nd_pmem, btt) passes what differs between
its disks: capacity, logical block size, DAX support, write cache mode,
and its own extra groups (``dax/write_cache``).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from fakesys.errors import Errno
from fakesys.kernel.base.class_ import Class
from fakesys.kernel.base.core import (
    RO, RW, Attribute, AttributeGroup, Device, device_add, device_del, DeviceType,
)
from fakesys.kernel.memregion import ida_alloc
from fakesys.kernel.parse import kstrtobool
from fakesys.sysfs.tree import Link

if TYPE_CHECKING:
    from fakesys.kernel.kernel import Kernel

BLOCK_EXT_MAJOR = 259


@dataclass
class DiskParams:
    capacity: Callable[[], int]     # in 512-byte sectors
    logical_block_size: int = 512
    physical_block_size: int = 4096
    dax: bool = False               # queue/dax: the disk supports DAX
    write_cache: bool = True        # "write back" vs "write through"
    max_hw_sectors_kb: int = 2147483647
    badblocks: Callable[[], str] | None = None
    read_only: Callable[[], bool] = lambda: False


def _const(value: str) -> Callable[[Device], str]:
    return lambda d: value


def _ignore(d: Device, buf: str) -> None:
    return None


def _wbt_show(d: Device) -> str:
    raise Errno(errno.EINVAL, "no writeback throttling on this queue")


QUEUE_GROUP = AttributeGroup([
    RW("add_random", _const("0\n"), _ignore),
    RO("chunk_sectors", _const("0\n")),
    RO("dax", lambda d: f"{int(d.params.dax)}\n"),
    RO("discard_granularity", _const("0\n")),
    RW("discard_max_bytes", _const("0\n"), _ignore),
    RO("discard_max_hw_bytes", _const("0\n")),
    RO("discard_zeroes_data", _const("0\n")),
    RO("dma_alignment", _const("511\n")),
    RO("fua", _const("0\n")),
    RO("hw_sector_size", lambda d: f"{d.params.logical_block_size}\n"),
    RW("io_poll", _const("0\n"), _ignore),
    RW("io_poll_delay", _const("0\n"), _ignore),
    RW("iostats", _const("0\n"), _ignore),
    RO("logical_block_size", lambda d: f"{d.params.logical_block_size}\n"),
    RO("max_discard_segments", _const("1\n")),
    RO("max_hw_sectors_kb", lambda d: f"{d.params.max_hw_sectors_kb}\n"),
    RO("max_integrity_segments", _const("0\n")),
    RW("max_sectors_kb", _const("1280\n"), _ignore),
    RO("max_segment_size", _const("65536\n")),
    RO("max_segments", _const("128\n")),
    RO("minimum_io_size", lambda d: f"{d.params.physical_block_size}\n"),
    RW("nomerges", _const("0\n"), _ignore),
    RW("nr_requests", _const("128\n"), _ignore),
    RO("nr_zones", _const("0\n")),
    RO("optimal_io_size", _const("0\n")),
    RO("physical_block_size", lambda d: f"{d.params.physical_block_size}\n"),
    RW("read_ahead_kb", _const("128\n"), _ignore),
    RW("rotational", _const("0\n"), _ignore),
    RW("rq_affinity", _const("0\n"), _ignore),
    RW("scheduler", _const("none\n"), _ignore),
    RW("stable_writes", _const("0\n"), _ignore),
    RO("virt_boundary_mask", _const("0\n")),
    RW("wbt_lat_usec", _wbt_show, _ignore),
    RW("write_cache", lambda d: "write back\n" if d.params.write_cache else "write through\n", _ignore),
    RO("write_same_max_bytes", _const("0\n")),
    RO("write_zeroes_max_bytes", _const("0\n")),
    RO("zone_append_max_bytes", _const("0\n")),
    RO("zone_write_granularity", _const("0\n")),
    RO("zoned", _const("none\n")),
], name="queue")

INTEGRITY_GROUP = AttributeGroup([
    RO("device_is_integrity_capable", _const("0\n")),
    RO("format", _const("none\n")),
    RO("protection_interval_bytes", _const("0\n")),
    RW("read_verify", _const("0\n"), _ignore),
    RO("tag_size", _const("0\n")),
    RW("write_generate", _const("0\n"), _ignore),
], name="integrity")

TRACE_GROUP = AttributeGroup([
    RW("act_mask", _const("disabled\n"), _ignore),
    RW("enable", _const("0\n"), _ignore),
    RW("end_lba", _const("disabled\n"), _ignore),
    RW("pid", _const("disabled\n"), _ignore),
    RW("start_lba", _const("disabled\n"), _ignore),
], name="trace")


def _badblocks_store(d: "Gendisk", buf: str) -> None:
    raise Errno(errno.EINVAL, "badblocks are managed by the driver")


DISK_GROUP = AttributeGroup([
    RO("alignment_offset", _const("0\n")),
    Attribute("badblocks", 0o644, lambda d: d.params.badblocks(), _badblocks_store),
    RO("capability", _const("0\n")),
    RO("discard_alignment", _const("0\n")),
    RO("diskseq", lambda d: f"{d.diskseq}\n"),
    RO("events", _const("")),
    RO("events_async", _const("")),
    RW("events_poll_msecs", _const("-1\n"), _ignore),
    RO("ext_range", _const("256\n")),
    RO("hidden", _const("0\n")),
    RO("inflight", _const("       0        0\n")),
    RO("range", _const("0\n")),
    RO("removable", _const("0\n")),
    RO("ro", lambda d: f"{int(d.params.read_only())}\n"),
    RO("size", lambda d: f"{d.params.capacity()}\n"),
    RO("stat", _const("".join(f"{0:>8} " for _ in range(16)) + f"{0:>8}\n")),
], is_visible=lambda d, a: 0 if a.name == "badblocks" and d.params.badblocks is None else a.mode)

DISK_TYPE = DeviceType("disk", [DISK_GROUP, QUEUE_GROUP, INTEGRITY_GROUP, TRACE_GROUP])


class BlockClass(Class):
    def __init__(self, kernel: "Kernel") -> None:
        super().__init__(kernel, "block")
        self.minors: set[int] = set()
        self.diskseq = 0

    def uevent_env(self, dev: Device) -> list[str]:
        return [f"DISKSEQ={dev.diskseq}"] if isinstance(dev, Gendisk) else []


class Bdi(Device):
    """A backing_dev_info device: /sys/devices/virtual/bdi/MAJ:MIN."""

    pm = True
    groups_ = AttributeGroup([
        RW("read_ahead_kb", _const("128\n"), _ignore),
        RW("min_ratio", _const("0\n"), _ignore),
        RW("max_ratio", _const("100\n"), _ignore),
        RO("stable_pages_required", _const("0\n")),
    ])


class Gendisk(Device):
    """A disk; ``media`` (optional) gives its /dev node read/write access."""

    type = DISK_TYPE
    pm = True

    def __init__(self, kernel: "Kernel", name: str, parent: Device, params: DiskParams,
                 extra_groups=(), media=None) -> None:
        block = block_class(kernel)
        minor = ida_alloc(block.minors)
        block.diskseq += 1
        super().__init__(kernel, name, parent, cls=block, devt=(BLOCK_EXT_MAJOR, minor))
        self.params = params
        self.diskseq = block.diskseq
        self.media = media
        self.groups = list(extra_groups)
        self.bdi: Device | None = None

    def writable_media(self) -> bool:
        return not self.params.read_only()


def block_class(kernel: "Kernel") -> BlockClass:
    cls = kernel.classes.get("block")
    if cls is None:
        cls = kernel.register_class(BlockClass(kernel))
        kernel.register_class(Class(kernel, "bdi"))
    return cls  # type: ignore[return-value]


def add_disk(disk: Gendisk) -> Gendisk:
    """device_add_disk(): the disk, its bdi, /sys/block/NAME and holders/slaves."""
    kernel = disk.kernel
    bdi = Bdi(kernel, f"{disk.devt[0]}:{disk.devt[1]}", None, cls=kernel.classes["bdi"])
    bdi.groups = [Bdi.groups_]
    device_add(bdi)
    disk.bdi = bdi
    device_add(disk)
    assert disk.kobj is not None
    disk.kobj.mkdir("holders")
    disk.kobj.mkdir("slaves")
    disk.kobj.add(Link("bdi", bdi.kobj))
    kernel.sys_block.add(Link(disk.name, disk.kobj))
    return disk


def del_gendisk(disk: Gendisk) -> None:
    kernel = disk.kernel
    kernel.sys_block.remove(disk.name)
    device_del(disk)
    if disk.bdi is not None:
        device_del(disk.bdi)
    block_class(kernel).minors.discard(disk.devt[1])


def write_cache_group(get: Callable[[], bool], set_: Callable[[bool], None]) -> AttributeGroup:
    """pmem's dax/ group: ``write_cache`` toggles the DAX write-cache flag."""
    return AttributeGroup([
        RW("write_cache", lambda d: f"{int(get())}\n", lambda d, buf: set_(kstrtobool(buf))),
    ], name="dax")
