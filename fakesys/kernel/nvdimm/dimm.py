"""DIMMs: the ``nmemN`` device (dimm_devs.c) and the ``nvdimm`` driver (dimm.c).

A DIMM owns a label area ("config data") and DPA space.  While the
``nvdimm`` driver is bound the DIMM has driver data (``ndd``): the parsed
label index and the DPA allocations, reserved from the labels at probe
time exactly as nd_label_reserve_dpa() does.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fakesys.errors import Errno
from fakesys.kernel.base.core import AttributeGroup, Device, DeviceType, RO
from fakesys.kernel.base.driver import Driver, module_driver
from fakesys.kernel.fs.char_dev import chrdev_major
from fakesys.kernel.nvdimm.bus import (
    DIMM_CMD_NAMES, ND_DEVICE_DIMM, ND_DEVICE_GROUP, NdDevice, NvdimmBus, commands_show,
)
from fakesys.kernel.nvdimm.label import LabelArea
from fakesys.kernel.uapi.ndctl import ND_CMD_GET_CONFIG_DATA, ND_CMD_GET_CONFIG_SIZE

if TYPE_CHECKING:
    from fakesys.kernel.kernel import Kernel


@dataclass
class DpaResource:
    """One allocation in a DIMM's DPA space, named by its label id."""

    name: str  # "pmem-<uuid>"
    start: int
    size: int

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass
class NvdimmDrvdata:
    """struct nvdimm_drvdata: exists while the nvdimm driver is bound."""

    dimm: "Nvdimm"
    labels: LabelArea | None
    dpa: list[DpaResource] = field(default_factory=list)

    def allocated(self, label_id: str) -> int:
        return sum(r.size for r in self.dpa if r.name == label_id)

    def resources(self, label_id: str) -> list[DpaResource]:
        return sorted((r for r in self.dpa if r.name == label_id), key=lambda r: r.start)

    def release(self, label_id: str) -> None:
        self.dpa = [r for r in self.dpa if r.name != label_id]


class Nvdimm(NdDevice):
    """``nmemN``.  ``lsa`` is the label area store, ``media`` the DPA space."""

    type = DeviceType("nvdimm", [ND_DEVICE_GROUP])
    nd_type = ND_DEVICE_DIMM

    def __init__(self, kernel: "Kernel", bus: NvdimmBus, id: int, *, cmd_mask: int,
                 lsa, media, max_xfer: int = 4096, labeling: bool = False,
                 locked: bool = False, unarmed: bool = False, provider_groups=()) -> None:
        major = chrdev_major(kernel, "dimmctl")
        super().__init__(kernel, f"nmem{id}", bus, bus=bus.nd.bus, devt=(major, id))
        self.id = id
        self.nvdimm_bus = bus
        self.cmd_mask = cmd_mask
        self.lsa = lsa
        self.media = media
        self.max_xfer = max_xfer
        self.labeling = labeling  # NDD_LABELING
        self.locked = locked      # NDD_LOCKED
        self.unarmed = unarmed    # NDD_UNARMED
        self.busy = 0             # enabled regions using this DIMM
        # the provider's own view of the DIMM (nvdimm_provider_data: the
        # NFIT's entries for it, its SMART firmware), None when it has none
        self.spec = None
        self.smart = None
        self.ndd: NvdimmDrvdata | None = None
        self.groups = [DIMM_GROUP, AttributeGroup([], name="firmware"), *provider_groups]

    def has_labels_cmds(self) -> bool:
        need = (1 << ND_CMD_GET_CONFIG_SIZE) | (1 << ND_CMD_GET_CONFIG_DATA)
        return self.lsa is not None and self.cmd_mask & need == need

    # -- attributes -------------------------------------------------------

    def flags_show(self) -> str:
        return ("label " if self.labeling else "") + ("lock " if self.locked else "") + "\n"

    def state_show(self) -> str:
        return "active\n" if self.busy else "idle\n"

    def available_slots_show(self) -> str:
        if self.ndd is None or self.ndd.labels is None:
            raise Errno(errno.ENXIO, "no label support")
        return f"{self.ndd.labels.available_slots()}\n"


DIMM_GROUP = AttributeGroup([
    RO("commands", lambda d: commands_show(d.cmd_mask, DIMM_CMD_NAMES)),
    RO("state", Nvdimm.state_show),
    RO("flags", Nvdimm.flags_show),
    RO("available_slots", Nvdimm.available_slots_show),
])


class LsaIo:
    """The label area as the kernel reaches it (GET/SET_CONFIG_DATA)."""

    def __init__(self, store) -> None:
        self.store = store
        self.config_size = store.size

    def read(self, offset: int, length: int) -> bytes:
        return self.store.read(offset, length)

    def write(self, offset: int, data: bytes) -> None:
        self.store.write(offset, data)


@module_driver
class NvdimmDriver(Driver):
    """``nvdimm``: reads the label index, reserves labelled DPA, sets NDD_LABELING."""

    name = "nvdimm"
    bus_name = "nd"
    module = "libnvdimm"
    type_mask = 1 << ND_DEVICE_DIMM

    def probe(self, dev: Device) -> None:
        assert isinstance(dev, Nvdimm)
        labels = None
        if dev.has_labels_cmds():
            labels = LabelArea(LsaIo(dev.lsa))
            if labels.validate():
                dev.labeling = True  # sticky: nothing ever clears it
        elif dev.labeling:
            raise Errno(errno.ENXIO, "labeling DIMM without label commands")
        ndd = NvdimmDrvdata(dev, labels)
        if labels is not None and labels.valid:
            for label in labels.labels():
                ndd.dpa.append(DpaResource(label_id(label.uuid), label.dpa, label.rawsize))
        dev.ndd = ndd

    def remove(self, dev: Device) -> None:
        assert isinstance(dev, Nvdimm)
        dev.ndd = None


def label_id(uuid) -> str:
    """nd_label_gen_id(): "pmem-<uuid>"."""
    return f"pmem-{uuid}"
