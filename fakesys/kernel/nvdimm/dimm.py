"""DIMMs: the ``nmemN`` device (dimm_devs.c) and the ``nvdimm`` driver (dimm.c).

A DIMM owns a label area ("config data") and DPA space.  While the
``nvdimm`` driver is bound the DIMM has driver data (``ndd``): the parsed
label index and the DPA allocations, reserved from the labels at probe
time exactly as nd_label_reserve_dpa() does.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from fakesys.errors import Errno
from fakesys.kernel.base.core import ADMIN_RO, RO, Attribute, AttributeGroup, Device, DeviceType
from fakesys.kernel.base.driver import Driver, module_driver
from fakesys.kernel.fs.char_dev import chrdev_major
from fakesys.kernel.nvdimm.bus import (
    DIMM_CMD_NAMES, FWA_STATE_NAMES, ND_DEVICE_DIMM, ND_DEVICE_GROUP, NVDIMM_FWA_ARM,
    NVDIMM_FWA_ARMED, NVDIMM_FWA_BUSY, NVDIMM_FWA_DISARM, NVDIMM_FWA_IDLE, NVDIMM_FWA_RESULT_FAIL,
    NVDIMM_FWA_RESULT_NEEDRESET, NVDIMM_FWA_RESULT_NONE, NVDIMM_FWA_RESULT_NOTSTAGED,
    NVDIMM_FWA_RESULT_SUCCESS, NdDevice, NvdimmBus, commands_show, nvdimm_bus_fw_capable,
)
from fakesys.kernel.nvdimm.label import LabelArea
from fakesys.kernel.parse import strip_newline
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
        # nvdimm->fw_ops (an NvdimmFwOps; None: the DIMM cannot be armed)
        # and the provider's cache behind it (nfit_mem's fwa_state/result/count)
        self.fw_ops: NvdimmFwOps | None = None
        self.fwa = None
        self.ndd: NvdimmDrvdata | None = None
        self.groups = [DIMM_GROUP, DIMM_FIRMWARE_GROUP, *provider_groups]

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


# -- firmware activation (the firmware group of dimm_devs.c)

class NvdimmFwOps(Protocol):
    """struct nvdimm_fw_ops: one DIMM's side of firmware activation."""

    def activate_state(self, nvdimm: "Nvdimm") -> int: ...

    def activate_result(self, nvdimm: "Nvdimm") -> int: ...

    def arm(self, nvdimm: "Nvdimm", trigger: int) -> int: ...


FWA_RESULT_NAMES = {NVDIMM_FWA_RESULT_NONE: "none", NVDIMM_FWA_RESULT_SUCCESS: "success",
                    NVDIMM_FWA_RESULT_FAIL: "fail", NVDIMM_FWA_RESULT_NOTSTAGED: "not_staged",
                    NVDIMM_FWA_RESULT_NEEDRESET: "need_reset"}


def _fw_ops(nvdimm: Nvdimm) -> NvdimmFwOps:
    if nvdimm.fw_ops is None:
        raise Errno(errno.EOPNOTSUPP, "no firmware activation")
    return nvdimm.fw_ops


def _fw_result_show(nvdimm: Nvdimm) -> str:
    """The outcome of the last activation as this DIMM saw it."""
    name = FWA_RESULT_NAMES.get(_fw_ops(nvdimm).activate_result(nvdimm))
    if name is None:
        raise Errno(errno.ENXIO, "activation result unknown")
    return f"{name}\n"


def _fw_activate_show(nvdimm: Nvdimm) -> str:
    """idle, armed or busy; a DIMM has no overflow state of its own (the bus does)."""
    state = _fw_ops(nvdimm).activate_state(nvdimm)
    if state not in (NVDIMM_FWA_IDLE, NVDIMM_FWA_ARMED, NVDIMM_FWA_BUSY):
        raise Errno(errno.ENXIO, "activation state unknown")
    return f"{FWA_STATE_NAMES[state]}\n"


def _fw_activate_store(nvdimm: Nvdimm, buf: str) -> None:
    """"arm" or "disarm" the DIMM for the next bus activation."""
    ops = _fw_ops(nvdimm)
    word = strip_newline(buf)
    if word == "arm":
        trigger = NVDIMM_FWA_ARM
    elif word == "disarm":
        trigger = NVDIMM_FWA_DISARM
    else:
        raise Errno(errno.EINVAL, "activate takes arm or disarm")
    rc = ops.arm(nvdimm, trigger)
    if rc < 0:
        raise Errno(-rc, f"{word} failed")


def _fw_visible(nvdimm: Nvdimm, a) -> int:
    """nvdimm_firmware_visible(): DIMM ops, and a bus that can quiesce."""
    if nvdimm.fw_ops is None or not nvdimm_bus_fw_capable(nvdimm.nvdimm_bus):
        return 0
    return a.mode


DIMM_FIRMWARE_GROUP = AttributeGroup([
    Attribute("activate", 0o600, _fw_activate_show, _fw_activate_store),
    ADMIN_RO("result", _fw_result_show),
], name="firmware", is_visible=_fw_visible)


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
