"""The virtio bus (drivers/virtio/virtio.c): ``virtioN`` devices under the
transport device that found them (a virtio-pci function), and drivers
matched by device id.

Only what the pmem device needs is modelled: the id attributes, the
status byte as the driver core drives it (ACKNOWLEDGE when the device is
added, DRIVER and FEATURES_OK while probing, DRIVER_OK once the probe
returned, back to ACKNOWLEDGE after a removal), and the negotiated
feature bits as the transport fixed them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fakesys.kernel.base.bus import Bus
from fakesys.kernel.base.core import RO, AttributeGroup, Device, device_add
from fakesys.kernel.base.driver import Driver
from fakesys.sysfs.tree import Dir

if TYPE_CHECKING:
    from fakesys.kernel.kernel import Kernel

VIRTIO_DEV_ANY_ID = 0xFFFFFFFF
VIRTIO_ID_PMEM = 27
PCI_VENDOR_ID_REDHAT_QUMRANET = 0x1AF4

# include/uapi/linux/virtio_config.h
S_ACKNOWLEDGE, S_DRIVER, S_DRIVER_OK, S_FEATURES_OK = 1, 2, 4, 8


class VirtioBus(Bus):
    def __init__(self, kernel: "Kernel") -> None:
        super().__init__(kernel, "virtio")

    def match(self, dev: Device, drv: Driver) -> bool:
        """virtio_dev_match(): (device, vendor) against the driver's id table."""
        if not isinstance(dev, VirtioDevice):
            return False
        for device, vendor in getattr(drv, "id_table", ()):
            if device == dev.device_id and vendor in (VIRTIO_DEV_ANY_ID, dev.vendor_id):
                return True
        return False

    def uevent_env(self, dev: Device) -> list[str]:
        return [f"MODALIAS={dev.modalias()}"] if isinstance(dev, VirtioDevice) else []

    def probe(self, dev: Device, drv: Driver) -> None:
        """virtio_dev_probe(): DRIVER, features, the driver's probe, DRIVER_OK."""
        assert isinstance(dev, VirtioDevice)
        dev.status |= S_DRIVER
        dev.features = dev.device_features
        dev.status |= S_FEATURES_OK
        try:
            drv.probe(dev)
        except Exception:
            dev.status = S_ACKNOWLEDGE  # virtio_dev_probe's error path: reset, then ACK again
            raise
        dev.status |= S_DRIVER_OK

    def remove(self, dev: Device, drv: Driver) -> None:
        """virtio_dev_remove(): the driver resets the device; ACKNOWLEDGE again."""
        assert isinstance(dev, VirtioDevice)
        drv.remove(dev)
        dev.status = S_ACKNOWLEDGE


class VirtioDevice(Device):
    """``virtioN``: ``parent`` is the transport (a PCI function) directory."""

    pm = True

    def __init__(self, kernel: "Kernel", index: int, parent: Device | Dir, device_id: int,
                 vendor_id: int = PCI_VENDOR_ID_REDHAT_QUMRANET, features: int = 0,
                 config: dict | None = None) -> None:
        super().__init__(kernel, f"virtio{index}", parent, bus=virtio_bus(kernel))
        self.index = index
        self.device_id = device_id
        self.vendor_id = vendor_id
        self.device_features = features
        self.features = 0
        self.status = 0
        self.config = dict(config or {})
        self.groups = [VIRTIO_DEV_GROUP]

    def modalias(self) -> str:
        return f"virtio:d{self.device_id:08X}v{self.vendor_id:08X}"

    def features_show(self) -> str:
        """One '0'/'1' per feature bit, bit 0 first, 64 bits."""
        return "".join("1" if self.features >> i & 1 else "0" for i in range(64)) + "\n"


VIRTIO_DEV_GROUP = AttributeGroup([
    RO("device", lambda d: f"0x{d.device_id:04x}\n"),
    RO("vendor", lambda d: f"0x{d.vendor_id:04x}\n"),
    RO("status", lambda d: f"0x{d.status:08x}\n"),
    RO("modalias", lambda d: f"{d.modalias()}\n"),
    RO("features", VirtioDevice.features_show),
])


def virtio_bus(kernel: "Kernel") -> VirtioBus:
    bus = kernel.buses.get("virtio")
    if bus is None:
        bus = kernel.register_bus(VirtioBus(kernel))
    return bus  # type: ignore[return-value]


def register_virtio_device(kernel: "Kernel", dev: VirtioDevice) -> VirtioDevice:
    """register_virtio_device(): the device is reset, then acknowledged."""
    dev.status = S_ACKNOWLEDGE
    device_add(dev)
    return dev


def pci_function_dir(kernel: "Kernel", address: str) -> Dir:
    """The directory of PCI function ``address`` ("0000:00:04.0") under its
    host bridge; the PCI device itself is not modelled."""
    domain_bus = address.rsplit(":", 1)[0]
    return kernel.sys_devices.mkdir(f"pci{domain_bus}").mkdir(address)
