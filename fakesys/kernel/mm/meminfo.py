"""``/proc/meminfo`` and ``/sys/devices/system/node/nodeN/meminfo``.

The model knows how much memory each node has and how much of it the
memory hotplug code gave or took (hot-added blocks coming online, the
``struct page`` arrays of added memory); it does not run a page allocator.
So a few lines follow the model and the rest are the machine's snapshot:

* ``MemTotal``, ``MemFree`` (and a node's ``MemUsed``) are the boot
  values of the topology plus what hotplug changed;
* ``MemAvailable`` moves with ``MemFree``; ``CommitLimit`` is half of
  ``MemTotal`` (vm.overcommit_ratio 50, no swap, no huge pages), as the
  kernel computes it;
* every other counter (slab, page cache, ...) is the topology's snapshot,
  as recorded on the real machine, 0 if it has none.

The line layouts are the 6.1 ones (fs/proc/meminfo.c, drivers/base/node.c,
mm/hugetlb.c): labels padded to 16 columns, values right-aligned in 8.
"""

from __future__ import annotations

# (name, label width, value width, unit) in output order
_KB = (16, 8, " kB")

PROC_LAYOUT: list[tuple[str, tuple[int, int, str]]] = [
    (name, _KB) for name in (
        "MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SwapCached", "Active",
        "Inactive", "Active(anon)", "Inactive(anon)", "Active(file)", "Inactive(file)",
        "Unevictable", "Mlocked", "SwapTotal", "SwapFree", "Zswap", "Zswapped", "Dirty",
        "Writeback", "AnonPages", "Mapped", "Shmem", "KReclaimable", "Slab", "SReclaimable",
        "SUnreclaim", "KernelStack", "PageTables", "SecPageTables", "NFS_Unstable", "Bounce",
        "WritebackTmp", "CommitLimit", "Committed_AS", "VmallocTotal", "VmallocUsed",
        "VmallocChunk", "Percpu")
] + [("HardwareCorrupted", (19, 5, " kB"))] + [
    (name, _KB) for name in ("AnonHugePages", "ShmemHugePages", "ShmemPmdMapped",
                             "FileHugePages", "FilePmdMapped")
] + [(name, (19, 5, "")) for name in ("HugePages_Total", "HugePages_Free", "HugePages_Rsvd",
                                        "HugePages_Surp")
] + [(name, _KB) for name in ("Hugepagesize", "Hugetlb", "DirectMap4k", "DirectMap2M", "DirectMap1G")]

NODE_LAYOUT: list[tuple[str, tuple[int, int, str]]] = [
    (name, _KB) for name in (
        "MemTotal", "MemFree", "MemUsed", "SwapCached", "Active", "Inactive", "Active(anon)",
        "Inactive(anon)", "Active(file)", "Inactive(file)", "Unevictable", "Mlocked", "Dirty",
        "Writeback", "FilePages", "Mapped", "AnonPages", "Shmem", "KernelStack", "PageTables",
        "SecPageTables", "NFS_Unstable", "Bounce", "WritebackTmp", "KReclaimable", "Slab",
        "SReclaimable", "SUnreclaim", "AnonHugePages", "ShmemHugePages", "ShmemPmdMapped")
] + [(name, (15, 8, " kB")) for name in ("FileHugePages", "FilePmdMapped")
] + [(name, (17, 5, "")) for name in ("HugePages_Total", "HugePages_Free", "HugePages_Surp")]

# What a 6.1 x86-64 guest that has just booted shows besides the totals
# (used when a topology gives no snapshot).
DEFAULT_PROC = {
    "Cached": 17340, "Active": 9940, "Inactive": 7692, "Active(anon)": 9940,
    "Inactive(anon)": 7692, "AnonPages": 344, "Mapped": 2436, "Shmem": 17340,
    "KReclaimable": 13852, "Slab": 22300, "SReclaimable": 13852, "SUnreclaim": 8448,
    "KernelStack": 960, "PageTables": 84, "Committed_AS": 19060,
    "VmallocTotal": 13743895347199, "VmallocUsed": 6872, "Percpu": 520, "Hugepagesize": 2048,
    "DirectMap4k": 38780, "DirectMap2M": 2058240,
}
DEFAULT_NODE = {
    "Active": 9940, "Inactive": 7692, "Active(anon)": 9940, "Inactive(anon)": 7692,
    "FilePages": 17340, "Mapped": 2436, "AnonPages": 344, "Shmem": 17340, "KernelStack": 960,
    "PageTables": 84, "KReclaimable": 13852, "Slab": 22300, "SReclaimable": 13852,
    "SUnreclaim": 8448,
}


def _line(prefix: str, name: str, fmt: tuple[int, int, str], value: int) -> str:
    label, width, unit = fmt
    return f"{prefix}{(name + ':').ljust(label)}{value:>{width}}{unit}\n"


def render_proc(values: dict[str, int]) -> str:
    return "".join(_line("", name, fmt, int(values.get(name, 0))) for name, fmt in PROC_LAYOUT)


def render_node(nid: int, values: dict[str, int]) -> str:
    return "".join(_line(f"Node {nid} ", name, fmt, int(values.get(name, 0))) for name, fmt in NODE_LAYOUT)
