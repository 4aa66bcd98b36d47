"""Which drivers this kernel is built with: the role of .config and the Makefiles.

For each bus, the modules whose :func:`~fakesys.kernel.base.driver.module_driver`
declarations register when the bus's subsystem loads, in link order: the
order in which drivers are offered a new device (the first whose probe
succeeds binds it).  A new driver joins by being listed here; the bus
code never imports it.
"""

BUILTIN: dict[str, tuple[str, ...]] = {
    # libnvdimm's drivers, and dax_pmem, which binds nd devices of type 7
    "nd": (
        "fakesys.kernel.nvdimm.bus",
        "fakesys.kernel.nvdimm.dimm",
        "fakesys.kernel.nvdimm.region",
        "fakesys.kernel.nvdimm.pmem",
        "fakesys.kernel.dax.pmem",
    ),
    # what udev loads for the dax:t0 modalias
    "dax": (
        "fakesys.kernel.dax.device",
        "fakesys.kernel.dax.kmem",
    ),
}

# The subsystems' invariant checkers (kernel/invariants.py runs them in order).
INVARIANTS: tuple[str, ...] = (
    "fakesys.kernel.nvdimm.invariants",
    "fakesys.kernel.dax.invariants",
    "fakesys.kernel.base.invariants",
)

# The modules this kernel is built with for these subsystems (what its
# modules.dep lists, Debian's =m): modprobe knows these names and no
# others.  Test modules a fake can load and unload (nfit_test) come from
# the platform (dev/modprobe.py).
MODULES: tuple[str, ...] = (
    "libnvdimm", "nfit", "nd_pmem", "nd_btt", "nd_e820", "of_pmem", "virtio_pmem", "nd_virtio",
    "ramdax", "dax", "device_dax", "dax_pmem", "dax_hmem", "kmem",
)
