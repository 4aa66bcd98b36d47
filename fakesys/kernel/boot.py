"""start_kernel(): the subsystems and drivers every emulated machine has."""

from __future__ import annotations

from fakesys.kernel.block import block_class
from fakesys.kernel.dax.bus import Dax
from fakesys.kernel.kernel import Kernel
from fakesys.kernel.nvdimm.bus import Nd
from fakesys.kernel.version import KernelVersion


def boot(version: str | KernelVersion) -> Kernel:
    kernel = Kernel(version)
    block_class(kernel)
    kernel.dax = Dax(kernel)
    kernel.nd = Nd(kernel)
    kernel.nd.register_drivers()
    return kernel
