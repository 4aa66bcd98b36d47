"""Early boot of the memory side of a machine (setup_arch, mm_init,
driver_init's memory_dev_init/node_dev_init, memory tiers, HMAT).

In order: the iomem tree (boot System RAM from the e820 map, then the
firmware and platform resources the machine has), the CPUs, the NUMA
nodes with boot memory or CPUs, the memory blocks of the boot RAM, the
HMAT targets, the memory tiers; and the ``/proc`` files that show them
(``iomem``, ``meminfo``, ``cmdline``), which ``fakesys run`` binds over
the host's in its private mount namespace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fakesys.kernel.acpi.hmat import hmat_init
from fakesys.kernel.base.cpu import Cpus
from fakesys.kernel.base.memory import memory_init
from fakesys.kernel.base.node import node_init
from fakesys.kernel.bootparam import BootParams
from fakesys.kernel.mm.memory_tiers import memory_tiers_init
from fakesys.kernel.resource import IORESOURCE_BUSY, IORESOURCE_SYSTEM_RAM, parse_iomem
from fakesys.sysfs.tree import Blob, File

if TYPE_CHECKING:
    from fakesys.kernel.kernel import Kernel

DEFAULT_CMDLINE = "BOOT_IMAGE=/boot/vmlinuz root=/dev/vda1 ro quiet"


def mm_init(kernel: "Kernel", spec: BootParams) -> None:
    iomem = kernel.iomem
    for r in spec.ram:
        iomem.insert("System RAM", r.start, r.end, IORESOURCE_SYSTEM_RAM | IORESOURCE_BUSY)
    stack: list = []
    for depth, start, end, name in parse_iomem(spec.iomem):
        parent = stack[depth - 1] if 0 < depth <= len(stack) else None
        res = iomem.find(start, end, name) if name == "System RAM" else None
        if res is None:
            res = iomem.insert(name, start, end, parent=parent)
        if res is None:
            raise ValueError(f"machine.iomem: {start:x}-{end:x} : {name} overlaps another resource")
        del stack[depth:]
        stack.append(res)
    kernel.cpus = Cpus(kernel, {c: n.id for n in spec.nodes for c in n.cpus})
    nodes = node_init(kernel, spec, {})
    memory = memory_init(kernel, spec)
    nodes.boot(memory.ram_kb_per_node())
    memory.boot()
    nodes.snapshot_boot()
    hmat_init(kernel)            # the tiers' late init asks it for CPU-less nodes (6.10+)
    memory_tiers_init(kernel)
    _acpi_tables(kernel, spec)
    proc = kernel.proc
    cmdline = spec.cmdline or DEFAULT_CMDLINE
    proc.add(File("iomem", 0o444, lambda: iomem.render()))
    proc.add(File("meminfo", 0o444, lambda: nodes.proc_meminfo()))
    proc.add(File("cmdline", 0o444, lambda: cmdline + "\n"))


def _acpi_tables(kernel: "Kernel", spec: BootParams) -> None:
    """/sys/firmware/acpi/tables/SIG (0400): the firmware's own tables, when
    the firmware has them (the kernel exports every table it found)."""
    if not spec.acpi_tables:
        return
    tables = kernel.sys.mkdir("firmware").mkdir("acpi").mkdir("tables")
    for sig, data in sorted(spec.acpi_tables.items()):
        tables.add(Blob(sig, 0o400, lambda d=data: len(d), lambda off, n, d=data: d[off:off + n]))
