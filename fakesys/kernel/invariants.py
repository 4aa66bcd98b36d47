"""Invariants of a live model, checked by one function tests and the daemon call.

``check(kernel)`` returns a list of human-readable violations (empty when
all is well).  Each subsystem owns its checks, in its own ``invariants``
module (listed in config.INVARIANTS: base, nvdimm, dax), with a
``check(kernel, after_crash)`` that recomputes what it checks from first
principles instead of asking the functions under test, and optionally a
``snapshot(kernel)`` of state a reader of sysfs cannot see.

``check(kernel, after_crash=True)`` is what a machine booted from media a
killed daemon left behind must satisfy: each subsystem says what an
interrupted update may leave.

``snapshot(kernel)`` captures everything a sysfs reader could observe
(every node, every attribute's content or errno) plus what the
subsystems add (the label areas), for "a rejected write changed nothing"
comparisons.
"""

from __future__ import annotations

import hashlib
import importlib
from types import ModuleType

from fakesys.errors import Errno
from fakesys.kernel import config
from fakesys.kernel.kernel import Kernel
from fakesys.sysfs.tree import Blob, DeviceNode, Dir, File, Link, Node


def _subsystems() -> list[ModuleType]:
    return [importlib.import_module(name) for name in config.INVARIANTS]


def check(kernel: Kernel, after_crash: bool = False) -> list[str]:
    problems: list[str] = []
    for sub in _subsystems():
        problems += sub.check(kernel, after_crash)
    return problems


def snapshot(kernel: Kernel) -> dict[str, object]:
    """Everything a reader of the tree could observe, plus the label areas.

    Attribute contents are rendered (an attribute whose show fails records
    its errno; one whose show crashes records the exception type, which a
    caller should treat as a bug).  Blob contents (media) are not read,
    only their sizes.
    """
    out: dict[str, object] = {}
    stack: list[tuple[str, Node]] = [("", kernel.tree.root)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, Dir):
            out[path] = ("dir", node.mode)
            prefix = f"{path}/" if path else ""
            stack.extend((prefix + name, child) for name, child in node.children.items())
        elif isinstance(node, Link):
            out[path] = ("link", node.readlink())
        elif isinstance(node, File):
            if node.show is None or not node.mode & 0o444:
                out[path] = ("file", node.mode, None)
                continue
            try:
                content: object = node.read()
            except Errno as e:
                content = ("errno", e.errno)
            except Exception as e:  # a crashing show: the caller decides
                content = ("fault", type(e).__name__)
            out[path] = ("file", node.mode, content)
        elif isinstance(node, Blob):
            try:
                size: object = node.size()
            except Exception as e:
                size = ("fault", type(e).__name__)
            out[path] = ("blob", node.mode, size)
        elif isinstance(node, DeviceNode):
            out[path] = ("node", node.kind, node.major, node.minor, node.mode)
    for sub in _subsystems():
        if hasattr(sub, "snapshot"):
            out.update(sub.snapshot(kernel))
    return out


def snapshot_digest(kernel: Kernel) -> str:
    """A short hash of :func:`snapshot`, for comparing across processes."""
    h = hashlib.sha256()
    for key, value in sorted(snapshot(kernel).items()):
        h.update(repr((key, value)).encode())
    return h.hexdigest()


def diff(before: dict[str, object], after: dict[str, object], limit: int = 12) -> list[str]:
    """What changed between two snapshots, as short lines."""
    out = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if a != b:
            out.append(f"{key}: {_short(a)} -> {_short(b)}")
            if len(out) >= limit:
                out.append("...")
                break
    return out


def _short(v: object) -> str:
    text = repr(v)
    return text if len(text) < 100 else text[:97] + "..."


def control_reply(cmd: str, kernel: Kernel, server=None) -> dict:
    """The daemon's answer to the control commands ``check``, ``check crash``
    (invariants, with what a killed daemon may leave tolerated) and
    ``snapshot`` (every attribute under sys/ as the model shows it now:
    text as latin-1, or the errno of a failing show)."""
    if cmd.startswith("check"):
        return {"violations": check(kernel, after_crash=cmd == "check crash"),
                "digest": snapshot_digest(kernel), "faults": getattr(server, "faults", 0)}
    out: dict[str, object] = {}
    for path, value in snapshot(kernel).items():
        if path.startswith("sys/") and isinstance(value, tuple) and value[0] == "file":
            content = value[2]
            if isinstance(content, bytes):
                out[path] = content.decode("latin-1")
            elif isinstance(content, tuple):
                out[path] = {content[0]: content[1]}
    return out
