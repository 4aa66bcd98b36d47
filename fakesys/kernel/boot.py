"""start_kernel(): the subsystems and drivers every emulated machine has."""

from __future__ import annotations

from fakesys.kernel.block import block_class
from fakesys.kernel.bootparam import BootParams
from fakesys.kernel.dax.bus import Dax
from fakesys.kernel.kernel import Kernel
from fakesys.kernel.mm.setup import mm_init
from fakesys.kernel.version import KernelVersion


def boot(version: str | KernelVersion, params: BootParams) -> Kernel:
    """``params``: what firmware says of the machine (boot RAM, nodes, HMAT)."""
    kernel = Kernel(version)
    mm_init(kernel, params)
    block_class(kernel)
    kernel.dax = Dax(kernel)
    return kernel  # libnvdimm loads with the first provider that needs it
