"""The byte stores behind a machine's media, and which of them are RAM.

With a state directory every store is a sparse file there, named after
what the topology calls it, so a new machine over the same directory (a
reboot) finds its media again; without one, stores live in memory.
Providers ask for stores here and hand them to the kernel inside the
descriptors they build.
"""

from __future__ import annotations

import os

from fakesys.media import FileStore, Memory
from fakesys.platform.topology import DimmSpec


def state_path(state_dir: str, name: str) -> str:
    """The file for store ``name`` (from a topology: DIMM names, ranges) in the
    state directory; a name that would lead anywhere else is refused."""
    if not name or "/" in name or "\0" in name or name in (".", ".."):
        raise ValueError(f"bad media name {name!r}: it must be a plain file name")
    return os.path.join(state_dir, name)


class Stores:
    """Every store of one machine, in the order they were made."""

    def __init__(self, state_dir: str | None = None) -> None:
        self.state_dir = state_dir
        if state_dir:
            os.makedirs(state_dir, exist_ok=True)
        self.stores: list = []
        self.ram_stores: list = []     # contents lost when power goes (cold reboot)

    def _store(self, name: str, size: int):
        if self.state_dir:
            store = FileStore(state_path(self.state_dir, name), size)
        else:
            store = Memory(size)
        self.stores.append(store)
        return store

    def dimm_stores(self, spec: DimmSpec):
        """A DIMM's label area (None without one) and DPA space."""
        lsa = self._store(f"{spec.name}.labels", spec.label_size) if spec.label_size else None
        if lsa is not None:
            lsa.durable = True   # label writes reach the file in order (media.FileStore)
        media = self._store(f"{spec.name}.media", spec.size)
        return lsa, media

    def store(self, name: str, size: int, ram: bool = False):
        """A byte store for media, kept in the state directory; ``ram``: the
        range is RAM, whose contents a cold reboot loses."""
        store = self._store(name, size)
        if ram:
            self.ram_stores.append(store)
        return store

    def flush(self) -> None:
        for store in self.stores:
            store.flush()

    def power_off(self, cold: bool) -> None:
        """Persistent media are flushed; RAM keeps its contents across a warm
        reboot (kexec) and loses them across a cold one."""
        if cold:
            for store in self.ram_stores:
                store.zero()
        self.flush()
