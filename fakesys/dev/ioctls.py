"""Which ioctls the bridge serves: one entry per subsystem, its node's chrdev
names, its ioctl type and number range, and the module that answers.

This is the one place a subsystem plugs its ioctls in.  Both sides read
it: the launcher builds the seccomp filter from :func:`trapped_types`
(sandbox/seccomp.py), so only these commands ever stop a tool, and the
daemon's bridge (bridge.py) routes a trapped command by the chrdev name of
the node it was issued on to the handler module, imported when the
daemon first serves, not by the launcher.

A handler module has ``prepare(device, nr, read)`` and
``dispatch(device, request, read_only)`` (see kernel/nvdimm/ioctl.py).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class IoctlFamily:
    """One subsystem's ioctls: ``type`` is the _IOC type byte, ``nr_count``
    how many command numbers from 0 (a power of two: the filter masks)."""

    chrdevs: tuple[str, ...]   # chrdev region names (register_chrdev) whose nodes take them
    type: int
    nr_count: int
    handler: str               # the module that prepares and dispatches them

    def __post_init__(self) -> None:
        assert self.nr_count & (self.nr_count - 1) == 0 and 0 < self.nr_count <= 256


FAMILIES: list[IoctlFamily] = []


def register_ioctls(family: IoctlFamily) -> None:
    FAMILIES.append(family)


# libnvdimm: ND_IOCTL ('N') numbers below 0x40 on /dev/ndctlN and /dev/nmemN;
# 'N' 0x40-0x7F are NVMe's and must pass untouched.
register_ioctls(IoctlFamily(("ndctl", "dimmctl"), 0x4E, 0x40, "fakesys.kernel.nvdimm.ioctl"))


def trapped_types() -> list[tuple[int, int]]:
    """(type, nr_count) of every registered family, for the filter."""
    return [(f.type, f.nr_count) for f in FAMILIES]


def handlers() -> dict[str, ModuleType]:
    """chrdev name -> its handler module."""
    return {name: importlib.import_module(f.handler) for f in FAMILIES for name in f.chrdevs}
