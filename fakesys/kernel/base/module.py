"""Loadable modules as sysfs shows them (kernel/module/sysfs.c, kernel/params.c).

A module that is loaded has ``/sys/module/NAME/initstate`` reading
``live``.  That file is what libkmod looks at before it inserts a module:
daxctl calls ``kmod_module_probe_insert_module("device_dax")`` before it
enables a device, and a module that reads ``live`` counts as loaded, so
nothing is inserted into the host kernel.  Parameters are files under
``parameters/`` with the kernel's bool formatting (``Y``/``N``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from fakesys.kernel.parse import kstrtobool
from fakesys.sysfs.tree import Dir, File

if TYPE_CHECKING:
    from fakesys.kernel.kernel import Kernel


class Module:
    """A loaded module: its directory and its parameters (name -> value)."""

    def __init__(self, kernel: "Kernel", name: str) -> None:
        self.kernel = kernel
        self.name = name
        self.params: dict[str, object] = {}
        self.dir: Dir = kernel.module_dir(name)
        if self.dir.get("initstate") is None:
            self.dir.add(File("initstate", 0o444, lambda: "live\n"))

    def param_bool(self, name: str, default: bool = False, mode: int = 0o644,
                   changed: Callable[[bool], None] | None = None) -> None:
        """module_param(name, bool, mode): reads ``Y``/``N``, takes what kstrtobool takes."""
        self.params[name] = default

        def show() -> str:
            return "Y\n" if self.params[name] else "N\n"

        def store(data: bytes) -> None:
            value = kstrtobool(data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape"))
            self.params[name] = value
            if changed is not None:
                changed(value)

        params = self.dir.mkdir("parameters")
        if params.get(name) is None:
            params.add(File(name, mode, show, store if mode & 0o222 else None))


def module_load(kernel: "Kernel", name: str) -> Module:
    """The module ``name`` is loaded (once): returns its record."""
    mod = kernel.modules.get(name)
    if mod is None:
        mod = kernel.modules[name] = Module(kernel, name)
    return mod


def request_module(kernel: "Kernel", alias: str, load: Callable[[], None]) -> None:
    """request_module(): a device whose modalias names a module that is not
    loaded; udev (user space) loads it, asynchronously, after the add event."""
    if kernel.udev is None:
        load()
    else:
        kernel.udev(alias, load, kernel.current_pid)
