"""The emulated kernel: the sysfs tree and the registries everything else fills.

A :class:`Kernel` holds what the real kernel keeps in global lists: the
buses, classes, loaded modules, device nodes, char device majors, the
uevent record, and one slot per subsystem for its state once it loads.
The driver core's operations are functions in base/ (core.py, bus.py,
dd.py, driver.py) that act on a device and reach the kernel through it.
Everything is synchronous; the daemon serializes requests, which gives
the same ordering guarantees as the kernel's device locks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from fakesys.kernel.base.timer import Timers
from fakesys.kernel.fs.char_dev import DYNAMIC_MAJORS
from fakesys.kernel.resource import ResourceTree
from fakesys.kernel.version import KernelVersion
from fakesys.sysfs.tree import Dir, Tree

if TYPE_CHECKING:
    from fakesys.kernel.base.bus import Bus
    from fakesys.kernel.base.class_ import Class
    from fakesys.kernel.base.core import Device
    from fakesys.kernel.base.devtmpfs import DevNode
    from fakesys.kernel.base.module import Module
    from fakesys.kernel.fs.char_dev import ChrdevNumbers


class Kernel:
    def __init__(self, version: KernelVersion | str = "6.19") -> None:
        self.version = version if isinstance(version, KernelVersion) else KernelVersion.parse(version)
        self.tree = Tree()
        self.sys = self.tree.root.mkdir("sys")
        self.dev = self.tree.root.mkdir("dev")
        self.proc = self.tree.root.mkdir("proc")
        self.sys_devices = self.sys.mkdir("devices")
        self.sys_bus = self.sys.mkdir("bus")
        self.sys_class = self.sys.mkdir("class")
        self.sys_block = self.sys.mkdir("block")
        self.sys_module = self.sys.mkdir("module")
        sys_dev = self.sys.mkdir("dev")
        self.sys_dev = {"c": sys_dev.mkdir("char"), "b": sys_dev.mkdir("block")}
        # driver core registries
        self.buses: dict[str, Bus] = {}
        self.classes: dict[str, Class] = {}
        self.modules: dict[str, Module] = {}   # loaded modules (base/module.py)
        self.devnodes: dict[str, DevNode] = {}
        self.devnode_listeners: list[Callable[[DevNode, bool], None]] = []
        self.uevents: list[tuple[str, str, str]] = []
        self.chrdev_majors: dict[str, int] = dict(DYNAMIC_MAJORS)
        self.chrdev_numbers: ChrdevNumbers | None = None
        self.chrdev_claimed: dict[Device, tuple[int, int]] = {}  # device -> the devt its driver gave it
        self.probe_depth = 0                   # probes in progress (base/dd.py)
        self.deferred: list[Callable[[], object]] = []  # work to run after them
        self.timers = Timers()                 # delayed work (base/timer.py)
        self.current_pid = 0  # the process whose write is being served ("current")
        # udev: loads the module a new device's modalias asks for; None loads at once
        self.udev: Callable[[str, Callable[[], None], int], None] | None = None
        # subsystem state, set when each loads
        self.nd = None   # libnvdimm (nvdimm/bus.py libnvdimm())
        self.memregion_ids: set[int] = set()  # lib/memregion.c (memregion.py)
        self.dax = None  # the dax core, set by boot()
        self.iomem = ResourceTree()  # physical address space (/proc/iomem)
        self.cpus = None
        self.nodes = None
        self.memory = None
        self.memory_tiers = None
        self.hmat = None

    def register_bus(self, bus: Bus) -> Bus:
        self.buses[bus.name] = bus
        return bus

    def register_class(self, cls: Class) -> Class:
        self.classes[cls.name] = cls
        return cls

    def module_dir(self, module: str) -> Dir:
        return self.sys_module.mkdir(module)
