"""Memory blocks and memory hotplug (drivers/base/memory.c, mm/memory_hotplug.c).

``/sys/devices/system/memory`` is the root device of subsystem "memory":
``block_size_bytes`` (hex, no 0x), ``auto_online_blocks`` (what hot-added
memory does: ``offline``, ``online``, ``online_kernel``, ``online_movable``),
``soft_offline_page``/``hard_offline_page`` and one ``memoryN`` device per
block of ``block_size`` bytes that has memory (N = address / block size).

Boot RAM comes online at boot in the zone its addresses give it on x86-64
(DMA below 16 MiB, DMA32 below 4 GiB, Normal above); a block that spans
two zones has no zone (``valid_zones`` reads ``none``).  Hot-added memory
(:meth:`Memory.add_memory`, the kmem driver's add_memory_driver_managed)
comes as offline blocks; onlining picks a zone as ``zone_for_pfn_range()``
does under the default "contig-zones" policy:

* ``online_movable`` -> Movable, ``online_kernel`` -> the first kernel
  zone (DMA, DMA32, Normal) whose span the block intersects, else Normal;
* ``online`` -> the kernel zone or Movable if exactly one of them spans
  the block, else the kernel zone (movable_node is off);
* an offline block's ``valid_zones`` is that default, then the other
  choices that differ from it (``Normal Movable``).

The kernel's write rules (``state_store``, ``online_store``, device_online
and device_offline): a word other than the four is EINVAL; asking
``state`` for the state the block is in is EINVAL, while ``online`` takes
it as a success; offlining a block that spans zones or has holes in its
RAM is EINVAL.  Offlining needs every page to be migrated away, which the
kernel's own allocations in a kernel zone prevent: the model treats every
block online in DMA/DMA32/Normal as holding such pages, so its offline is
EBUSY (as the golden kmem session shows for ``--no-movable`` memory);
Movable blocks go offline.

State changes go through :meth:`Memory.notify` to the node states
(``has_memory``, ``has_normal_memory``), the accounting (MemTotal/MemFree),
the memory tiers and the HMAT targets, as the memory notifier chain does.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from fakesys.errors import Errno
from fakesys.kernel.base.bus import Bus
from fakesys.kernel.base.core import RO, RW, WO, AttributeGroup, Device, device_add, device_del
from fakesys.kernel.base.node import SubsysRoot
from fakesys.kernel.base.uevent import kobject_uevent
from fakesys.kernel.parse import kstrtobool, strip_newline
from fakesys.kernel.resource import IORESOURCE_BUSY, IORESOURCE_SYSTEM_RAM
from fakesys.sysfs.tree import Link

if TYPE_CHECKING:
    from fakesys.kernel.kernel import Kernel
    from fakesys.kernel.bootparam import BootParams

ZONE_DMA, ZONE_DMA32, ZONE_NORMAL, ZONE_MOVABLE = range(4)
ZONE_NAMES = ("DMA", "DMA32", "Normal", "Movable")
KERNEL_ZONES = (ZONE_DMA, ZONE_DMA32, ZONE_NORMAL)
_ZONE_LIMITS = ((0, 16 << 20), (16 << 20, 4 << 30), (4 << 30, 1 << 64))   # x86-64

MMOP_OFFLINE, MMOP_ONLINE, MMOP_ONLINE_KERNEL, MMOP_ONLINE_MOVABLE = range(4)
ONLINE_TYPE_NAMES = ("offline", "online", "online_kernel", "online_movable")

MEM_ONLINE, MEM_GOING_OFFLINE, MEM_OFFLINE = "online", "going-offline", "offline"

# one struct page (64 bytes) per 4 KiB page: the memmap of added memory
MEMMAP_RATIO = 64


def online_type_from_str(buf: str) -> int:
    """mhp_online_type_from_str(): sysfs_streq() against the four words."""
    word = strip_newline(buf)
    if word in ONLINE_TYPE_NAMES:
        return ONLINE_TYPE_NAMES.index(word)
    return -1


@dataclass
class MemoryNotify:
    """struct memory_notify: which node changed state with this change."""

    block: "MemoryBlock"
    status_change_nid: int = -1          # the node gained its first / lost its last memory
    status_change_nid_normal: int = -1   # ... the first / last memory in a kernel zone


class MemoryBlock(Device):
    pm = True

    def __init__(self, memory: "Memory", id: int, nid: int) -> None:
        super().__init__(memory.kernel, f"memory{id}", memory.root, bus=memory.bus)
        self.memory = memory
        self.id = id
        self.nid = nid
        self.state = MEM_OFFLINE
        self.zone: int | None = None     # mem->zone while online; None spans zones
        self.online_type = MMOP_OFFLINE
        self.ram = memory.block_size     # bytes of System RAM in the block (less: holes)
        self.hotplugged = False
        self.groups = [MEMORY_BLOCK_GROUP]

    @property
    def start(self) -> int:
        return self.id * self.memory.block_size

    @property
    def size(self) -> int:
        return self.memory.block_size

    # -- attributes ---------------------------------------------------------

    def valid_zones_show(self) -> str:
        if self.state == MEM_ONLINE:
            return f"{ZONE_NAMES[self.zone] if self.zone is not None else 'none'}\n"
        mem = self.memory
        default = mem.zone_for_range(MMOP_ONLINE, self.nid, self.start, self.size)
        out = [ZONE_NAMES[default]]
        for online_type in (MMOP_ONLINE_KERNEL, MMOP_ONLINE_MOVABLE):
            zone = mem.zone_for_range(online_type, self.nid, self.start, self.size)
            if zone != default:
                out.append(ZONE_NAMES[zone])
        return " ".join(out) + "\n"

    def state_store(self, buf: str) -> None:
        online_type = online_type_from_str(buf)
        if online_type < 0:
            raise Errno(errno.EINVAL, f"{strip_newline(buf)!r} is not a memory block state")
        if online_type == MMOP_OFFLINE:
            ret = self.memory.device_offline(self)
        else:
            self.online_type = online_type
            ret = self.memory.device_online(self)
        if ret:
            raise Errno(errno.EINVAL, f"{self.name} is {self.state} already")

    def online_store(self, buf: str) -> None:
        """The driver core's ``online``: 1/0 (kstrtobool); the current state is fine."""
        if kstrtobool(buf):
            self.memory.device_online(self)
        else:
            self.memory.device_offline(self)


def _blk(d: Device) -> MemoryBlock:
    assert isinstance(d, MemoryBlock)
    return d


MEMORY_BLOCK_GROUP = AttributeGroup([
    RO("phys_index", lambda d: f"{_blk(d).id:08x}\n"),
    RW("state", lambda d: f"{_blk(d).state}\n", lambda d, b: _blk(d).state_store(b)),
    RO("phys_device", lambda d: "0\n"),
    RO("removable", lambda d: "1\n"),
    RO("valid_zones", lambda d: _blk(d).valid_zones_show()),
    RW("online", lambda d: f"{int(_blk(d).state == MEM_ONLINE)}\n", lambda d, b: _blk(d).online_store(b)),
])


def _auto_online_store(d: Device, buf: str) -> None:
    online_type = online_type_from_str(buf)
    if online_type < 0:
        raise Errno(errno.EINVAL, f"{strip_newline(buf)!r} is not an online type")
    d.memory.auto_online = online_type  # type: ignore[attr-defined]


MEMORY_ROOT_GROUP = AttributeGroup([
    RO("block_size_bytes", lambda d: f"{d.memory.block_size:x}\n"),
    RW("auto_online_blocks", lambda d: f"{ONLINE_TYPE_NAMES[d.memory.auto_online]}\n", _auto_online_store),
    WO("soft_offline_page", lambda d, b: None),
    WO("hard_offline_page", lambda d, b: None),
])


def _zone_of(start: int, end: int) -> set[int]:
    return {z for z, (lo, hi) in enumerate(_ZONE_LIMITS) if start < hi and lo <= end}


class Memory:
    """The memory block devices and the hotplug operations on them."""

    def __init__(self, kernel: "Kernel", spec: "BootParams") -> None:
        self.kernel = kernel
        self.spec = spec
        self.block_size = spec.block_size
        self.auto_online = ONLINE_TYPE_NAMES.index(spec.auto_online_blocks)
        self.bus = kernel.register_bus(Bus(kernel, "memory"))
        self.root = SubsysRoot(kernel, "memory", kernel.sys_devices.mkdir("system"), [MEMORY_ROOT_GROUP])
        self.root.memory = self  # type: ignore[attr-defined]
        device_add(self.root)
        self.blocks: dict[int, MemoryBlock] = {}
        self.notifiers: list[Callable[[str, MemoryNotify], None]] = []
        self.memmap: dict[int, tuple[int, int]] = {}   # block id -> (node charged, kB)
        self.resources: dict = {}                       # start -> its System RAM resource
        kernel.nodes.register_listeners.append(self._node_registered)

    # -- boot ---------------------------------------------------------------

    def boot(self) -> None:
        """Boot RAM: one online block per block-sized piece that has RAM."""
        bs = self.block_size
        per_block: dict[int, list[tuple[int, int, int]]] = {}
        for r in self.spec.ram:
            b = r.start // bs
            while b * bs <= r.end:
                lo, hi = max(r.start, b * bs), min(r.end, b * bs + bs - 1)
                per_block.setdefault(b, []).append((lo, hi, r.node))
                b += 1
        for b in sorted(per_block):
            pieces = per_block[b]
            mem = MemoryBlock(self, b, pieces[0][2])
            mem.ram = sum(hi - lo + 1 for lo, hi, _ in pieces)
            zones = set().union(*(_zone_of(lo, hi) for lo, hi, _ in pieces))
            mem.zone = zones.pop() if len(zones) == 1 else None
            mem.state = MEM_ONLINE
            self.blocks[b] = mem
            device_add(mem)
        for mem in self.blocks.values():
            self._link(mem)

    def ram_kb_per_node(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for r in self.spec.ram:
            out[r.node] = out.get(r.node, 0) + (r.end - r.start + 1) // 1024
        return out

    # -- node links -----------------------------------------------------------

    def _link(self, mem: MemoryBlock) -> None:
        """register_memory_block_under_node(): nodeN/memoryK and memoryK/nodeN."""
        node = self.kernel.nodes.devices.get(mem.nid)
        if node is None or node.kobj is None or mem.kobj is None:
            return
        if node.kobj.get(mem.name) is None:
            node.kobj.add(Link(mem.name, mem.kobj))
        if mem.kobj.get(node.name) is None:
            mem.kobj.add(Link(node.name, node.kobj))

    def _node_registered(self, nid: int, registered: bool) -> None:
        if registered:
            for mem in self.blocks.values():
                if mem.nid == nid:
                    self._link(mem)

    # -- zones ----------------------------------------------------------------

    def zone_span(self, nid: int, zone: int) -> tuple[int, int] | None:
        """[start, end) of a node's zone: the online blocks in it."""
        spans = [(m.start, m.start + m.size) for m in self.blocks.values()
                 if m.nid == nid and m.state == MEM_ONLINE and m.zone == zone]
        if zone in KERNEL_ZONES:   # boot RAM spanning zones counts in each of them
            lo, hi = _ZONE_LIMITS[zone]
            for r in self.spec.ram:
                if r.node == nid and r.start < hi and lo <= r.end:
                    spans.append((max(r.start, lo), min(r.end + 1, hi)))
        if not spans:
            return None
        return min(s for s, _ in spans), max(e for _, e in spans)

    def _intersects(self, nid: int, zone: int, start: int, size: int) -> bool:
        span = self.zone_span(nid, zone)
        return span is not None and start < span[1] and start + size > span[0]

    def default_kernel_zone(self, nid: int, start: int, size: int) -> int:
        for zone in KERNEL_ZONES:
            if self._intersects(nid, zone, start, size):
                return zone
        return ZONE_NORMAL

    def zone_for_range(self, online_type: int, nid: int, start: int, size: int) -> int:
        """zone_for_pfn_range() under the contig-zones policy, movable_node off."""
        if online_type == MMOP_ONLINE_KERNEL:
            return self.default_kernel_zone(nid, start, size)
        if online_type == MMOP_ONLINE_MOVABLE:
            return ZONE_MOVABLE
        kernel_zone = self.default_kernel_zone(nid, start, size)
        in_kernel = self._intersects(nid, kernel_zone, start, size)
        in_movable = self._intersects(nid, ZONE_MOVABLE, start, size)
        if in_kernel != in_movable:
            return kernel_zone if in_kernel else ZONE_MOVABLE
        return kernel_zone

    # -- online / offline -------------------------------------------------------

    def device_online(self, mem: MemoryBlock) -> int:
        """device_online(): 1 if online already (the block's online type is
        reset either way), else 0 or an Errno."""
        try:
            if mem.state == MEM_ONLINE:
                return 1
            if mem.online_type == MMOP_OFFLINE:
                mem.online_type = MMOP_ONLINE
            self._online(mem, mem.online_type)
            kobject_uevent(mem, "online")
            return 0
        finally:
            mem.online_type = MMOP_OFFLINE

    def device_offline(self, mem: MemoryBlock) -> int:
        if mem.state == MEM_OFFLINE:
            return 1
        self._offline(mem)
        kobject_uevent(mem, "offline")
        return 0

    def _node_has(self, nid: int, zones) -> bool:
        return any(m.nid == nid and m.state == MEM_ONLINE and (m.zone in zones or m.zone is None)
                   for m in self.blocks.values())

    def _online(self, mem: MemoryBlock, online_type: int) -> None:
        """memory_block_online() / online_pages()."""
        nodes = self.kernel.nodes
        zone = self.zone_for_range(online_type, mem.nid, mem.start, mem.size)
        arg = MemoryNotify(mem)
        if zone in KERNEL_ZONES and not self._node_has(mem.nid, KERNEL_ZONES):
            arg.status_change_nid_normal = mem.nid
        if not self._node_has(mem.nid, KERNEL_ZONES + (ZONE_MOVABLE,)):
            arg.status_change_nid = mem.nid
        self.notify("going-online", arg)
        mem.zone = zone
        mem.state = MEM_ONLINE
        nodes.pages_online(mem.nid, mem.ram // 1024)
        if zone in KERNEL_ZONES:
            nodes.has_normal_memory.add(mem.nid)
        nodes.has_memory.add(mem.nid)
        self.notify("online", arg)

    def _offline(self, mem: MemoryBlock) -> None:
        """memory_block_offline() / offline_pages()."""
        if mem.zone is None:
            raise Errno(errno.EINVAL, f"{mem.name} spans more than one zone")
        if mem.ram < mem.size:
            raise Errno(errno.EINVAL, f"{mem.name} has memory holes")
        if mem.zone in KERNEL_ZONES:
            raise Errno(errno.EBUSY, f"{mem.name}: unmovable pages in zone {ZONE_NAMES[mem.zone]}")
        nodes = self.kernel.nodes
        arg = MemoryNotify(mem)
        mem.state = MEM_GOING_OFFLINE
        self.notify("going-offline", arg)
        zone = mem.zone
        mem.state = MEM_OFFLINE
        mem.zone = None
        if zone in KERNEL_ZONES and not self._node_has(mem.nid, KERNEL_ZONES):
            arg.status_change_nid_normal = mem.nid
            nodes.has_normal_memory.discard(mem.nid)
        if not self._node_has(mem.nid, KERNEL_ZONES + (ZONE_MOVABLE,)):
            arg.status_change_nid = mem.nid
            nodes.has_memory.discard(mem.nid)
        nodes.pages_online(mem.nid, -(mem.ram // 1024))
        self.notify("offline", arg)

    def notify(self, action: str, arg: MemoryNotify) -> None:
        for cb in list(self.notifiers):
            cb(action, arg)

    # -- hotplug ----------------------------------------------------------------

    def add_memory(self, nid: int, start: int, size: int, name: str = "System RAM (kmem)",
                   online_type: int | None = None) -> None:
        """add_memory_driver_managed(): the System RAM resource (below
        whatever the caller requested), the blocks (offline), the node if it
        was offline, the memmap, then onlining per ``auto_online_blocks``."""
        bs = self.block_size
        if size <= 0 or start % bs or size % bs:
            raise Errno(errno.EINVAL, f"{start:#x}+{size:#x} is not memory-block aligned")
        nodes = self.kernel.nodes
        if nid not in nodes.possible:
            raise Errno(errno.EINVAL, f"node {nid} is not possible")
        ids = range(start // bs, (start + size) // bs)
        if any(i in self.blocks for i in ids):
            raise Errno(errno.EEXIST, f"memory blocks of {start:#x}+{size:#x} exist")
        res = self.kernel.iomem.request_region(start, size, name,
                                               IORESOURCE_SYSTEM_RAM | IORESOURCE_BUSY)
        if res is None:
            raise Errno(errno.EEXIST, f"could not reserve System RAM {start:#x}+{size:#x}")
        self.resources[start] = res
        new_node = nid not in nodes.online
        for i in ids:
            mem = MemoryBlock(self, i, nid)
            mem.hotplugged = True
            self.blocks[i] = mem
            device_add(mem)
            kb = bs // MEMMAP_RATIO // 1024
            self.memmap[i] = (nodes.charge(nid, kb), kb)
        if new_node:
            nodes.set_online(nid)           # registers nodeN, which links the new blocks
        for i in ids:
            self._link(self.blocks[i])
        online_type = self.auto_online if online_type is None else online_type
        if online_type != MMOP_OFFLINE:
            for i in ids:
                self.blocks[i].online_type = online_type
                self.device_online(self.blocks[i])

    def remove_memory(self, start: int, size: int) -> None:
        """remove_memory(): EBUSY while any block of the range is online; else
        the blocks, the System RAM resource and the memmap go, and a node left
        without memory goes offline."""
        bs = self.block_size
        ids = [i for i in range(start // bs, (start + size) // bs) if i in self.blocks]
        if any(self.blocks[i].state != MEM_OFFLINE for i in ids):
            raise Errno(errno.EBUSY, f"memory in {start:#x}+{size:#x} is online")
        nids = {self.blocks[i].nid for i in ids}
        for i in ids:
            mem = self.blocks.pop(i)
            node = self.kernel.nodes.devices.get(mem.nid)
            if node is not None and node.kobj is not None:
                node.kobj.remove(mem.name)
            device_del(mem)
            charged, kb = self.memmap.pop(i, (-1, 0))
            self.kernel.nodes.uncharge(charged, kb)
        res = self.resources.pop(start, None)
        if res is not None:
            self.kernel.iomem.release(res)
        for nid in nids:
            self.kernel.nodes.try_offline(nid)

    def blocks_in(self, start: int, size: int) -> list[MemoryBlock]:
        bs = self.block_size
        return [self.blocks[i] for i in range(start // bs, (start + size) // bs) if i in self.blocks]


def memory_init(kernel: "Kernel", spec: "BootParams") -> Memory:
    mem = Memory(kernel, spec)
    kernel.memory = mem
    return mem
