"""Sizes the emulated kernel shares: include/linux/sizes.h, the page size
and the block layer's sector.

One definition for every module of the emulated kernel, so a reader (or a
future second architecture) finds them in one place rather than in each
driver that happens to need a 2 MiB or a page.  The emulated machine is
x86-64, whose base page is 4 KiB (arch/x86/include/asm/page_types.h).
Block devices count in 512-byte sectors whatever their logical block size
(SECTOR_SIZE, include/linux/blk_types.h).

The sysfs layer (fakesys/sysfs/tree.py) does not import this: it keeps
its own ``SYSFS_BUFFER_SIZE`` because the tree layer knows nothing of the
emulated kernel; in Linux that buffer is one page, hence the same value.
"""

from __future__ import annotations

__all__ = ["SZ_4K", "SZ_8K", "SZ_2M", "SZ_16M", "SZ_1G", "PAGE_SHIFT", "PAGE_SIZE",
           "SECTOR_SHIFT", "SECTOR_SIZE"]

SZ_4K = 0x0000_1000
SZ_8K = 0x0000_2000
SZ_2M = 0x0020_0000
SZ_16M = 0x0100_0000
SZ_1G = 0x4000_0000

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

SECTOR_SHIFT = 9
SECTOR_SIZE = 1 << SECTOR_SHIFT
