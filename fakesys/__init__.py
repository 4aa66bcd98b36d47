"""fakesys: the Linux libnvdimm / device-DAX sysfs ABI served over FUSE."""

import os as _os

#: the shipped topologies (package data; ``devices/`` in the checkout links here)
TOPOLOGY_DIR = _os.path.join(_os.path.dirname(__file__), "topologies")

#: the built-in default topology (here, so the CLI need not import the parser to name it)
DEFAULT_TOPOLOGY = _os.path.join(TOPOLOGY_DIR, "default.toml")


def shipped_topology(name: str) -> str:
    """The path of the shipped topology ``name`` (``nfit_test`` or ``nfit_test.toml``).

    Everything the product reads at run time is package data, so a wheel's
    ``modprobe nfit_test`` and ``fakesys replay`` find the same files as a
    checkout does.
    """
    base = name if name.endswith(".toml") else name + ".toml"
    return _os.path.join(TOPOLOGY_DIR, base)


def topology_path(arg: str | None) -> str:
    """What ``fakesys up``/``run --topology`` mean by ``arg``: a file if one
    exists there, else a shipped topology's name, else the default."""
    if not arg:
        return DEFAULT_TOPOLOGY
    if _os.path.exists(arg) or _os.sep in arg:
        return _os.path.abspath(arg)
    shipped = shipped_topology(arg)
    return shipped if _os.path.exists(shipped) else _os.path.abspath(arg)
