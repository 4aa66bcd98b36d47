"""Which kernel's ABI is emulated, and every behaviour keyed on it.

Topologies say ``kernel = "6.1"``; code asks ``kernel.version.<feature>``
instead of comparing numbers, so the differences between kernel versions
are all listed here, each with the release that changed it.
"""

from __future__ import annotations

from dataclasses import dataclass

NEWEST = "6.19"


@dataclass(frozen=True, order=True)
class KernelVersion:
    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> "KernelVersion":
        parts = str(text).strip().split(".")
        try:
            return cls(int(parts[0]), int(parts[1]) if len(parts) > 1 else 0)
        except ValueError:
            raise ValueError(f"bad kernel version {text!r}") from None

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    def at_least(self, text: str) -> bool:
        return self >= KernelVersion.parse(text)

    @property
    def nfit_platform_driver(self) -> bool:
        """ACPI NFIT became a platform driver ("acpi-nfit") in 6.16; before, an
        ACPI driver "nfit" with the bus under /sys/devices/LNXSYSTM:00/..."""
        return self.at_least("6.16")

    @property
    def sticky_labeling_flag(self) -> bool:
        """6.1 keeps NDD_LABELING set after the index is zeroed and the DIMM
        re-probed (observed in the golden nfit session)."""
        return True

    @property
    def has_ramdax(self) -> bool:
        return self.at_least("6.19")

    @property
    def hmem_defaults_to_kmem(self) -> bool:
        """dax_hmem marks its regions IORESOURCE_DAX_KMEM from 6.3, so their
        devices bind to kmem; 6.1 binds them to device_dax (golden hmem)."""
        return self.at_least("6.3")

    @property
    def dax_match_by_type(self) -> bool:
        """dax_bus_match(): from 6.3 a driver matches by region type (kmem for
        KMEM regions, device_dax for the others) or by new_id; before, the
        device_dax driver matched every device (match_always) and kmem only
        the names written to its new_id."""
        return self.at_least("6.3")

    @property
    def hmem_platform_device(self) -> bool:
        """6.3 moved hmem device creation into dax_hmem: a ``hmem_platform.0``
        device and driver create the ``hmem.N`` devices; 6.1 has neither."""
        return self.at_least("6.3")

    @property
    def dax_memmap_on_memory(self) -> bool:
        """The dax device attribute ``memmap_on_memory`` appeared in 6.8."""
        return self.at_least("6.8")

    @property
    def dax_mapping_misaligned_is_noop(self) -> bool:
        """From 6.9 a ``mapping`` write whose length is not aligned returns
        success without allocating (the rc = -ENXIO initialisation went away
        with the rwsem conversion); before it failed with ENXIO."""
        return self.at_least("6.9")

    @property
    def memtier_adistance_from_hmat(self) -> bool:
        """From 6.7 kmem (and the memory tier code) asks the platform for a
        node's abstract distance (mt_calc_adistance, HMAT performance
        relative to the DRAM nodes'); 6.1 gives kmem memory a fixed one."""
        return self.at_least("6.7")

    @property
    def memtier_cpuless_from_hmat(self) -> bool:
        """From 6.10 memory tiers leave CPU-less boot nodes to late init,
        which places them by their HMAT performance; before, every node
        with memory at boot is DRAM (golden hmat: node 1 in memory_tier4)."""
        return self.at_least("6.10")
