"""The nd bus: bus type, the ``ndbusN`` device, its ``ndctlN`` class device
and the ``nd_bus`` driver.  Counterpart of drivers/nvdimm/bus.c and core.c.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Protocol

from fakesys.errors import Errno
from fakesys.kernel.base.bus import Bus
from fakesys.kernel.base.class_ import Class
from fakesys.kernel.base.core import RO, Attribute, AttributeGroup, Device, DeviceType, device_add, device_del
from fakesys.kernel.base.driver import Driver, built_drivers, driver_register, module_driver
from fakesys.kernel.fs.char_dev import chrdev_major
from fakesys.kernel.memregion import ida_alloc, memregion_free
from fakesys.kernel.nvdimm.badrange import Badrange
from fakesys.kernel.parse import strip_newline
from fakesys.sysfs.tree import File

if TYPE_CHECKING:
    from fakesys.kernel.kernel import Kernel

# include/linux/nd.h: ND_DEVICE_* numbers, used in modalias "nd:t%d"
ND_DEVICE_DIMM = 1
ND_DEVICE_REGION_PMEM = 2
ND_DEVICE_REGION_BLK = 3
ND_DEVICE_NAMESPACE_IO = 4
ND_DEVICE_NAMESPACE_PMEM = 5
ND_DEVICE_DAX_PMEM = 7

# ndctl.h command names, indexed by command number
BUS_CMD_NAMES = {1: "ars_cap", 2: "ars_start", 3: "ars_status", 4: "clear_error", 10: "cmd_call"}
DIMM_CMD_NAMES = {1: "smart", 2: "smart_thresh", 3: "flags", 4: "get_size", 5: "get_data",
                  6: "set_data", 7: "effect_size", 8: "effect_log", 9: "vendor", 10: "cmd_call"}


def commands_show(mask: int, names: dict[int, str]) -> str:
    """Each command name followed by one space, then a newline (core.c)."""
    return "".join(f"{names[bit]} " for bit in sorted(names) if mask & (1 << bit)) + "\n"


class NdDevice(Device):
    """A device on the nd bus; ``nd_type`` selects drivers and the modalias."""

    nd_type = 0
    # What the pmem and dax_pmem drivers hold while bound to a namespace,
    # btt, pfn or dax device (devm resources: released on unbind): the
    # iomem reservation and the gendisk.
    iomem_res = None
    disk = None

    def numa_node(self) -> int:
        parent = self.parent_device
        return parent.numa_node() if isinstance(parent, NdDevice) else -1

    def target_node(self) -> int:
        parent = self.parent_device
        return parent.target_node() if isinstance(parent, NdDevice) else -1

    def holds_uuid(self, uuid) -> bool:
        """Whether this device claims ``uuid``: is_namespace_uuid_busy() asks
        the pmem namespaces and the btt, pfn and dax devices."""
        return False

    def is_nd_region(self) -> bool:
        """is_nd_region(): a region device (decided by its type, as the kernel does)."""
        return self.nd_type in (ND_DEVICE_REGION_PMEM, ND_DEVICE_REGION_BLK)

    def advance_seeds(self, dev: Device) -> None:
        """nd_region_advance_seeds(): only a region has seeds (region.py)."""


# nd_device_attribute_group: present on every nd device but the bus itself
ND_DEVICE_GROUP = AttributeGroup([
    RO("modalias", lambda d: f"nd:t{d.nd_type}\n"),
    RO("devtype", lambda d: f"{d.type.name}\n"),
])

# nd_numa_attribute_group
ND_NUMA_GROUP = AttributeGroup([
    RO("numa_node", lambda d: f"{d.numa_node()}\n"),
    RO("target_node", lambda d: f"{d.target_node()}\n"),
], is_visible=lambda d, a: 0 if a.name == "target_node" and d.target_node() < 0 else a.mode)


class NdBusType(Bus):
    """bus_type nd: match by type bit; probe advances region seeds."""

    def __init__(self, kernel: "Kernel") -> None:
        super().__init__(kernel, "nd")

    def match(self, dev: Device, drv: Driver) -> bool:
        if isinstance(dev, NvdimmBus):
            return isinstance(drv, NdBusDriver)
        mask = getattr(drv, "type_mask", 0)
        return isinstance(dev, NdDevice) and bool(mask & (1 << dev.nd_type))

    def uevent_env(self, dev: Device) -> list[str]:
        return [f"MODALIAS=nd:t{dev.nd_type if isinstance(dev, NdDevice) else 0}"]

    def probe(self, dev: Device, drv: Driver) -> None:
        """nvdimm_bus_probe(): seeds advance when the probe returns 0 or EOPNOTSUPP."""
        err: Errno | None = None
        try:
            drv.probe(dev)
        except Errno as e:
            err = e
        region = dev.parent_device
        if isinstance(region, NdDevice) and region.is_nd_region() and (
                err is None or err.errno == errno.EOPNOTSUPP):
            region.advance_seeds(dev)
        if err is not None:
            raise err


class NvdimmBus(NdDevice):
    """``ndbusN``: one per provider (ACPI NFIT, e820, virtio-pmem, ...)."""

    type = DeviceType(None)

    def __init__(self, kernel: "Kernel", nd: "Nd", id: int, parent, provider: str,
                 cmd_mask: int = 0, ndctl_handler=None) -> None:
        super().__init__(kernel, f"ndbus{id}", parent, bus=nd.bus)
        self.nd = nd
        self.id = id
        self.provider = provider
        self.cmd_mask = cmd_mask
        self.ndctl: Device | None = None
        # nd_desc: the provider's command handler (->ndctl; None: no commands)
        # and its own state (what container_of(nd_desc) reaches: acpi_nfit_desc)
        self.ndctl_handler = ndctl_handler
        self.provider_data = None
        self.badrange = Badrange()  # nvdimm_bus->badrange: known poison
        # nd_desc->fw_ops: the provider's firmware-activate methods (an
        # NvdimmBusFwOps), None when the platform cannot activate firmware
        self.fw_ops: NvdimmBusFwOps | None = None
        self.groups = [BUS_GROUP, BUS_FIRMWARE_GROUP]

    def nvdimms(self) -> list:
        """The bus's nmemN devices (is_nvdimm(): by device type)."""
        return [c for c in self.children if isinstance(c, NdDevice) and c.nd_type == ND_DEVICE_DIMM]

    def regions(self) -> list:
        return [c for c in self.children if isinstance(c, NdDevice) and c.is_nd_region()]


BUS_GROUP = AttributeGroup([
    RO("commands", lambda b: commands_show(b.cmd_mask, BUS_CMD_NAMES)),
    RO("provider", lambda b: f"{b.provider}\n"),
    RO("wait_probe", lambda b: "1\n"),
])


# -- firmware activation (include/linux/libnvdimm.h, the firmware group of bus.c)

# enum nvdimm_fwa_state / nvdimm_fwa_capability / nvdimm_fwa_result: the
# order matters, callers compare with < (INVALID is 0 in each)
NVDIMM_FWA_INVALID, NVDIMM_FWA_IDLE, NVDIMM_FWA_ARMED, NVDIMM_FWA_BUSY, NVDIMM_FWA_ARM_OVERFLOW = range(5)
NVDIMM_FWA_CAP_INVALID, NVDIMM_FWA_CAP_NONE, NVDIMM_FWA_CAP_QUIESCE, NVDIMM_FWA_CAP_LIVE = range(4)
(NVDIMM_FWA_RESULT_INVALID, NVDIMM_FWA_RESULT_NONE, NVDIMM_FWA_RESULT_SUCCESS,
 NVDIMM_FWA_RESULT_NOTSTAGED, NVDIMM_FWA_RESULT_NEEDRESET, NVDIMM_FWA_RESULT_FAIL) = range(6)
# enum nvdimm_fwa_trigger
NVDIMM_FWA_ARM, NVDIMM_FWA_DISARM = range(2)

FWA_STATE_NAMES = {NVDIMM_FWA_IDLE: "idle", NVDIMM_FWA_ARMED: "armed", NVDIMM_FWA_BUSY: "busy",
                   NVDIMM_FWA_ARM_OVERFLOW: "overflow"}


class NvdimmBusFwOps(Protocol):
    """struct nvdimm_bus_fw_ops: what a provider answers for the whole bus.

    Called with the bus lock held; each may ask the platform (a provider
    command), so a show can have the side effect of refreshing a cache."""

    def activate_state(self, bus: "NvdimmBus") -> int: ...

    def capability(self, bus: "NvdimmBus") -> int: ...

    def activate(self, bus: "NvdimmBus") -> int: ...


def _fw_ops(bus: NvdimmBus) -> NvdimmBusFwOps:
    if bus.fw_ops is None:
        raise Errno(errno.EOPNOTSUPP, "no firmware activation")
    return bus.fw_ops


def _fw_activate_show(bus: NvdimmBus) -> str:
    """The bus's activate state; EOPNOTSUPP unless the platform can quiesce."""
    ops = _fw_ops(bus)
    cap = ops.capability(bus)
    state = ops.activate_state(bus)
    if cap < NVDIMM_FWA_CAP_QUIESCE:
        raise Errno(errno.EOPNOTSUPP, "platform cannot quiesce for activation")
    name = FWA_STATE_NAMES.get(state)
    if name is None:
        raise Errno(errno.ENXIO, "activation state unknown")
    return f"{name}\n"


def _fw_activate_store(bus: NvdimmBus, buf: str) -> None:
    """"live" activates now, "quiesce" with the system quiesced (as
    hibernate_quiet_exec() would: the emulation has nothing to freeze);
    only an armed bus can activate, a busy one says EBUSY."""
    ops = _fw_ops(bus)
    if strip_newline(buf) not in ("live", "quiesce"):
        raise Errno(errno.EINVAL, "activate takes live or quiesce")
    state = ops.activate_state(bus)
    if state == NVDIMM_FWA_BUSY:
        raise Errno(errno.EBUSY, "an activation is still settling")
    if state not in (NVDIMM_FWA_ARMED, NVDIMM_FWA_ARM_OVERFLOW):
        raise Errno(errno.ENXIO, "nothing armed")
    rc = ops.activate(bus)
    if rc < 0:
        raise Errno(-rc, "activation failed")


def _fw_capability_show(bus: NvdimmBus) -> str:
    cap = _fw_ops(bus).capability(bus)
    if cap == NVDIMM_FWA_CAP_QUIESCE:
        return "quiesce\n"
    if cap == NVDIMM_FWA_CAP_LIVE:
        return "live\n"
    raise Errno(errno.EOPNOTSUPP, "no activation capability")


def nvdimm_bus_fw_capable(bus: NvdimmBus) -> bool:
    """nvdimm_bus_firmware_visible(): the bus's (and its DIMMs') firmware
    attributes exist only with fw_ops and at least quiesce capability."""
    return bus.fw_ops is not None and bus.fw_ops.capability(bus) >= NVDIMM_FWA_CAP_QUIESCE


BUS_FIRMWARE_GROUP = AttributeGroup([
    Attribute("activate", 0o600, _fw_activate_show, _fw_activate_store),
    RO("capability", _fw_capability_show),
], name="firmware", is_visible=lambda b, a: a.mode if nvdimm_bus_fw_capable(b) else 0)


class NdctlDevice(Device):
    """``ndctlN``: class "nd" character device of a bus (ioctl endpoint)."""

    def __init__(self, kernel: "Kernel", bus: NvdimmBus, major: int) -> None:
        super().__init__(kernel, f"ndctl{bus.id}", bus, cls=bus.nd.cls, devt=(major, bus.id))
        self.nvdimm_bus = bus


@module_driver
class NdBusDriver(Driver):
    """``nd_bus``: binds ndbusN and creates its ndctlN (no bind/unbind files)."""

    name = "nd_bus"
    bus_name = "nd"
    module = "libnvdimm"
    suppress_bind_attrs = True

    def probe(self, dev: Device) -> None:
        assert isinstance(dev, NvdimmBus)
        if dev.ndctl is None:
            major = chrdev_major(self.kernel, "ndctl")
            dev.ndctl = device_add(NdctlDevice(self.kernel, dev, major))

    def remove(self, dev: Device) -> None:
        assert isinstance(dev, NvdimmBus)
        if dev.ndctl is not None:
            device_del(dev.ndctl)
            dev.ndctl = None


class Nd:
    """libnvdimm's global state: the bus type, class, id allocators, drivers."""

    def __init__(self, kernel: "Kernel") -> None:
        self.kernel = kernel
        self.bus = kernel.register_bus(NdBusType(kernel))
        self.cls = kernel.register_class(Class(kernel, "nd"))
        self.bus_ids: set[int] = set()
        self.dimm_ids: set[int] = set()
        self.block_minors: set[int] = set()
        self.diskseq = 0
        self.params = kernel.module_dir("libnvdimm").mkdir("parameters")

    def register_drivers(self) -> None:
        """The module inits of libnvdimm and the drivers built with it."""
        self.params.add(File("key_revalidate", 0o444, lambda: "Y\n"))
        for cls in built_drivers(self.bus.name):
            driver_register(cls(self.kernel, self.bus))

    ida_get = staticmethod(ida_alloc)

    def bus_register(self, parent, provider: str, cmd_mask: int = 0, ndctl_handler=None) -> NvdimmBus:
        """nvdimm_bus_register()."""
        bus = NvdimmBus(self.kernel, self, self.ida_get(self.bus_ids), parent, provider, cmd_mask,
                        ndctl_handler)
        device_add(bus)
        return bus

    def bus_unregister(self, bus: NvdimmBus) -> None:
        """nvdimm_bus_unregister(): the bus and everything below it go; their
        ids are free again (the kernel's release functions ida_free them)."""
        regions, dimms = bus.regions(), bus.nvdimms()
        device_del(bus)
        for r in regions:
            memregion_free(self.kernel, r.id)
        self.dimm_ids.difference_update(d.id for d in dimms)
        self.bus_ids.discard(bus.id)


def libnvdimm(kernel: "Kernel") -> Nd:
    """The libnvdimm module's state, loading it (and the nd drivers) first.

    A provider (nfit, e820, of_pmem, virtio_pmem, ramdax) depends on
    libnvdimm, so loading one loads it: a machine without any has no
    /sys/bus/nd and no /sys/class/nd, as the hmat recording shows.
    """
    if kernel.nd is None:
        kernel.nd = Nd(kernel)
        kernel.nd.register_drivers()
    return kernel.nd


class BusProviderDriver(Driver):
    """A driver whose probe registers one nvdimm bus and keeps it in
    drvdata (e820_pmem, of_pmem, virtio_pmem, ramdax): unbinding it
    unregisters that bus and everything below it (nvdimm_bus_unregister)."""

    def remove(self, dev: Device) -> None:
        if dev.driver_data is not None:
            self.kernel.nd.bus_unregister(dev.driver_data)
            dev.driver_data = None
