"""The NFIT as firmware hands it to acpi_nfit_init(): one :class:`Nfit` per
bus, with a :class:`NfitDimm` per NVDIMM (its memory-device-to-SPA entries,
control region and flush hints folded together, keyed by ``name``) and an
:class:`NfitSpa` per system-physical-address range with the DIMMs mapped
into it.

The hardware behind the table comes with it: a DIMM's label area and DPA
space, and the media of a range without DIMMs, are byte stores (the
interface of fakesys.media) the kernel reads and writes as it would the
device.  The platform builds these; the kernel only consumes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_DIMM_COMMANDS = ("get_size", "get_data", "set_data", "cmd_call")


@dataclass
class NfitDimmInfo:
    """What the NFIT says of one NVDIMM: its memory device and control
    region fields and the _DSM interface the firmware offers.  A topology
    describes a DIMM with these same fields (platform/topology.py)."""

    name: str
    handle: int
    size: int                      # DPA space exposed to the region(s)
    phys_id: int = 0
    vendor_id: int = 0x8086        # as stored in the control region (little-endian)
    device_id: int = 0x0001
    revision_id: int = 0x0001
    subsystem_vendor_id: int = 0
    subsystem_device_id: int = 0
    subsystem_revision_id: int = 0
    serial: int = 0                # as stored in the control region
    format: int = 0x0301           # interface code
    manufacturing_location: int = 0
    manufacturing_date: int = 0
    family: int = 0                # NVDIMM_FAMILY_INTEL
    dsm_mask: int = 0x70
    commands: list[str] = field(default_factory=lambda: list(DEFAULT_DIMM_COMMANDS))
    max_xfer: int = 4076
    flags: list[str] = field(default_factory=list)  # memdev flags: not_armed, ...
    smart: bool | None = None      # Intel SMART state (default: dsm_mask has function 1)
    security: str = ""             # "disabled": the DIMM shows security/frozen attributes
    fw_activate: bool = False      # firmware/activate and firmware/result attributes


@dataclass
class NfitDimm(NfitDimmInfo):
    """One NVDIMM as the table hands it over: its NFIT fields and its stores."""

    lsa: object = None             # label storage area; None: the DIMM has none
    media: object = None


@dataclass
class NfitSpaInfo:
    """A SPA range (what becomes an nd region) and its memdev mappings:
    ``dimms[i]`` maps ``dpa[i]`` at ``region_offset[i]``."""

    spa: int
    size: int
    dimms: list[str]
    dpa: list[int] = field(default_factory=list)
    range_index: int = 0
    numa_node: int = 0
    target_node: int = 0
    interleave_granularity: int = 4096
    volatile: bool = False         # a volatile memory range (nd_volatile region)
    region_offset: list[int] = field(default_factory=list)


@dataclass
class NfitSpa(NfitSpaInfo):
    """A SPA range as the table hands it over; ``media`` backs a range
    without DIMMs."""

    media: object = None


@dataclass
class NfitInfo:
    """What the NFIT and the bus's _DSM say of the bus as a whole."""

    commands: list[str] = field(default_factory=lambda: ["cmd_call"])
    dsm_mask: int = 0
    acpi_slots: int = 0            # ACPI NVDIMM slot devices
    region_probe_order: str = "reverse"  # order the async region probes finished in
    revision: int = 1              # table revision (nfit/revision)
    persistence_domain: str = ""   # memory_controller | cpu_cache (platform capabilities)
    flush_hints: bool = False      # DIMMs have flush hint addresses (deep_flush writable)
    fw_activate: bool = False      # bus firmware/activate, firmware/capability
    ars_seconds: float = 1.0       # how long one ARS of the firmware takes
    clear_err_unit: int = 256
    media_errors: list = field(default_factory=list)  # [(spa, length)] poisoned at boot


@dataclass
class Nfit(NfitInfo):
    """One NFIT as firmware hands it over: the bus, its DIMMs, its ranges."""

    dimms: list[NfitDimm] = field(default_factory=list)
    regions: list[NfitSpa] = field(default_factory=list)
