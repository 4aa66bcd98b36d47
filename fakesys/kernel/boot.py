"""start_kernel(): the subsystems and drivers every emulated machine has."""

from __future__ import annotations

from fakesys.kernel.block import block_class
from fakesys.kernel.dax.bus import Dax
from fakesys.kernel.kernel import Kernel
from fakesys.kernel.version import KernelVersion


def boot(version: str | KernelVersion, machine=None) -> Kernel:
    """``machine`` is the topology's MachineSpec (boot RAM, nodes, HMAT);
    without one the machine is QEMU's default pc with 2 GiB on node 0."""
    from fakesys.kernel.mm.setup import mm_init
    from fakesys.platform.topology import Topology, default_machine
    kernel = Kernel(version)
    mm_init(kernel, machine if machine is not None else default_machine(Topology()))
    block_class(kernel)
    kernel.dax = Dax(kernel)
    return kernel  # libnvdimm loads with the first provider that needs it
