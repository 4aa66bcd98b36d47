"""Claims: what btt, pfn and dax devices share (claim.c).

A claim device takes a namespace through its ``namespace`` attribute and
gives it a personality (sector, fsdax, devdax) once bound.  Seeds are idle
claim devices; a non-seed claim device that loses its namespace while
unbound goes away.
"""

from __future__ import annotations

import errno
import uuid as uuidlib
from typing import TYPE_CHECKING

from fakesys.errors import Errno
from fakesys.kernel.base.core import device_add, device_del
from fakesys.kernel.nvdimm.bus import NdDevice
from fakesys.kernel.parse import strim, strip_newline
from fakesys.kernel.sizes import SZ_16M
from fakesys.kernel.nvdimm.namespace import (
    CCLASS_BTT, CCLASS_BTT2, CCLASS_DAX, CCLASS_NONE, CCLASS_PFN, Namespace, NamespacePmem, parse_uuid,
)

if TYPE_CHECKING:
    from fakesys.kernel.nvdimm.region import Region


class NamespaceMedia:
    """A namespace's bytes as nvdimm_read_bytes()/nvdimm_write_bytes() reach them."""

    def __init__(self, ns: Namespace) -> None:
        self.ns = ns
        self.size = ns.res_size

    def _base(self) -> int:
        return self.ns.res_start - self.ns.region.start

    def read(self, offset: int, length: int) -> bytes:
        return self.ns.region.media_read(self._base() + offset, length)

    def write(self, offset: int, data: bytes) -> None:
        self.ns.region.media_write(self._base() + offset, data)


class Claim(NdDevice):
    """A btt, pfn or dax device."""

    kind = ""
    ids_attr = ""

    def holds_uuid(self, uuid: uuidlib.UUID) -> bool:
        return self.uuid == uuid

    def __init__(self, region: "Region", id: int, ndns: Namespace | None = None) -> None:
        super().__init__(region.kernel, f"{self.kind}{region.id}.{id}", region,
                         bus=region.nvdimm_bus.nd.bus)
        self.region = region
        self.id = id
        self.uuid: uuidlib.UUID | None = None
        self.ndns: Namespace | None = None
        if ndns is not None:
            self.attach(ndns)

    @classmethod
    def create_seed(cls, region: "Region") -> "Claim":
        ids = getattr(region, cls.ids_attr)
        dev = cls(region, region.nvdimm_bus.nd.ida_get(ids))
        device_add(dev)
        return dev

    def numa_node(self) -> int:
        return self.region.numa_node()

    def target_node(self) -> int:
        return self.region.target_node()

    def is_seed(self) -> bool:
        return getattr(self.region, f"{self.kind}_seed") is self

    def attach(self, ns: Namespace) -> None:
        ns.claim = self
        self.ndns = ns

    def detach(self) -> None:
        if self.ndns is not None:
            self.ndns.claim = None
        self.ndns = None

    def reset(self) -> None:
        """What nd_detach_and_reset() clears on a device that stays."""
        self.uuid = None

    def unregister(self) -> None:
        device_del(self)
        getattr(self.region, self.ids_attr).discard(self.id)

    def media(self) -> NamespaceMedia:
        assert self.ndns is not None
        return NamespaceMedia(self.ndns)

    # -- attributes -------------------------------------------------------

    def accepts(self, cclass: int) -> bool:
        return cclass == CCLASS_NONE

    def namespace_show(self) -> str:
        return f"{self.ndns.name}\n" if self.ndns is not None else "\n"

    def namespace_store(self, buf: str) -> None:
        """nd_namespace_store()."""
        if self.driver is not None:
            raise Errno(errno.EBUSY, f"{self.name} is active")
        name = strim(buf)
        if not (name.startswith("namespace") or name == ""):
            raise Errno(errno.EINVAL, f"not a namespace name: {name!r}")
        if name == "":
            self.detach()
            if not self.is_seed() and self.driver is None:
                self.unregister()
            else:
                self.reset()
            return
        if self.ndns is not None:
            raise Errno(errno.EBUSY, f"already claims {self.ndns.name}")
        found = next((c for c in self.region.children
                      if isinstance(c, Namespace) and c.name == name), None)
        if found is None:
            raise Errno(errno.ENODEV, f"{name} not found under {self.region.name}")
        if not self.accepts(found.claim_class):
            raise Errno(errno.EBUSY, f"{name} holder class does not allow {self.kind}")
        if found.capacity < SZ_16M:
            raise Errno(errno.ENXIO, f"{name} too small to host")
        if found.claim is not None:
            raise Errno(errno.EBUSY, f"{name} already claimed")
        self.attach(found)

    def uuid_show(self) -> str:
        return f"{self.uuid}\n" if self.uuid is not None else "\n"

    def uuid_store(self, buf: str) -> None:
        if self.driver is not None:
            raise Errno(errno.EBUSY, f"{self.name} is active")
        self.uuid = parse_uuid(buf)

    def parent_uuid(self) -> uuidlib.UUID | None:
        ns = self.ndns
        return ns.uuid if isinstance(ns, NamespacePmem) else None


def claim_accepts_btt(cclass: int) -> bool:
    return cclass in (CCLASS_NONE, CCLASS_BTT, CCLASS_BTT2)


def claim_accepts(kind: str, cclass: int) -> bool:
    if kind == "btt":
        return claim_accepts_btt(cclass)
    return cclass in (CCLASS_NONE, {"pfn": CCLASS_PFN, "dax": CCLASS_DAX}[kind])


def size_select_show(current: int, supported) -> str:
    """nd_size_select_show(): the list with the current value in brackets."""
    return "".join(f"[{s}] " if s == current else f"{s} " for s in supported) + "\n"


def strip(buf: str) -> str:
    return strip_newline(buf)
