"""The arrows ARCHITECTURE.md allows between the layers, checked on every
import (those inside functions and under TYPE_CHECKING too).

A layer may import itself and what its row lists, nothing else of
fakesys: the emulated kernel never reaches the platform, /dev, FUSE or
the sandbox; the tree and the FUSE server know no device; the sandbox
knows only the table of ioctls to trap and the control socket's format.
"""

from __future__ import annotations

import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fakesys")

ALLOWED = {
    "fakesys.sysfs": ("fakesys.errors",),
    "fakesys.fuse": ("fakesys.errors", "fakesys.sysfs"),
    "fakesys.kernel": ("fakesys.errors", "fakesys.media", "fakesys.sysfs"),
    "fakesys.platform": ("fakesys.errors", "fakesys.media", "fakesys.sysfs", "fakesys.kernel",
                         "fakesys.TOPOLOGY_DIR", "fakesys.DEFAULT_TOPOLOGY"),
    "fakesys.sandbox": ("fakesys.errors", "fakesys.control", "fakesys.dev.ioctls"),
}


def imports(path: str) -> list[str]:
    """Every module (or module.name) a file imports."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
            out += names if node.module == "fakesys" else [node.module]
    return out


def _files(package: str):
    top = os.path.join(os.path.dirname(PACKAGE), *package.split("."))
    for root, _, files in os.walk(top):
        for name in sorted(files):
            if name.endswith(".py"):
                yield os.path.join(root, name)


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_what_it_may(layer):
    allowed = (layer,) + ALLOWED[layer]
    bad = [(os.path.relpath(path, PACKAGE), m) for path in _files(layer) for m in imports(path)
           if m.startswith("fakesys") and not any(m == a or m.startswith(a + ".") for a in allowed)]
    assert bad == []


def test_the_check_sees_a_forbidden_import(tmp_path):
    """The walk finds imports inside functions and TYPE_CHECKING blocks."""
    src = tmp_path / "x.py"
    src.write_text("if TYPE_CHECKING:\n    from fakesys.platform.machine import Machine\n"
                   "def f():\n    import fakesys.dev.bridge\n")
    assert imports(str(src)) == ["fakesys.platform.machine", "fakesys.dev.bridge"]
