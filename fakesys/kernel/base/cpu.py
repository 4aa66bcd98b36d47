"""CPUs (drivers/base/cpu.c), only as far as NUMA tools look at them.

``/sys/devices/system/cpu`` with ``possible``/``present``/``online``/
``offline``/``kernel_max`` and a ``cpuN`` device per CPU of the machine,
linked both ways with its node (``cpuN/nodeM``, ``nodeM/cpuN``), so that
glibc's CPU count and libnuma's node-to-CPU maps describe the emulated
machine, not the host.  CPUs are always online (no CPU hotplug).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fakesys.kernel.base.bus import Bus
from fakesys.kernel.base.core import RO, AttributeGroup, Device, device_add
from fakesys.kernel.base.node import SubsysRoot, nodelist
from fakesys.sysfs.tree import Link

if TYPE_CHECKING:
    from fakesys.kernel.kernel import Kernel

NR_CPUS = 8192  # CONFIG_NR_CPUS of Debian's x86-64 kernels


class CpuDevice(Device):
    pm = True

    def __init__(self, cpus: "Cpus", cpu: int, nid: int) -> None:
        super().__init__(cpus.kernel, f"cpu{cpu}", cpus.root, bus=cpus.bus)
        self.cpu = cpu
        self.nid = nid
        self.groups = [CPU_GROUP] if cpu else []


CPU_GROUP = AttributeGroup([RO("online", lambda d: "1\n")])


class Cpus:
    def __init__(self, kernel: "Kernel", cpu_nodes: dict[int, int]) -> None:
        self.kernel = kernel
        self.cpu_nodes = dict(sorted(cpu_nodes.items()))
        self.bus = kernel.register_bus(Bus(kernel, "cpu"))
        ids = list(self.cpu_nodes)
        self.root = SubsysRoot(kernel, "cpu", kernel.sys_devices.mkdir("system"), [AttributeGroup([
            RO("kernel_max", lambda d: f"{NR_CPUS - 1}\n"),
            RO("offline", lambda d: "\n"),
            RO("online", lambda d: f"{nodelist(ids)}\n"),
            RO("possible", lambda d: f"{nodelist(ids)}\n"),
            RO("present", lambda d: f"{nodelist(ids)}\n"),
        ])])
        device_add(self.root)
        self.devices: dict[int, CpuDevice] = {}
        for cpu, nid in self.cpu_nodes.items():
            dev = CpuDevice(self, cpu, nid)
            device_add(dev)
            self.devices[cpu] = dev

    def link_node(self, nid: int, node_dev: Device) -> None:
        """register_cpu_under_node(): ``cpuN/nodeM`` (the node side is done by
        the node's registration)."""
        for cpu, dev in self.devices.items():
            if dev.nid == nid and dev.kobj is not None and dev.kobj.get(f"node{nid}") is None:
                dev.kobj.add(Link(f"node{nid}", node_dev.kobj))
