"""Test harnesses for fakesys: fuzzing, crash consistency, concurrency.

They live outside the ``fakesys`` package because the product does not ship
them (issue 15): a wheel holds the fake, not the tools that torture it.

The harnesses start Python subprocesses with ``sys.executable`` (``-m
fakesys.cli``, the daemon it spawns, ``-m harness.concurrency`` inside
``fakesys run``) and the daemon of a crash run imports ``harness.crash``
for its ``crash-after`` verb.  None of them is started from this checkout's
root, so importing this package puts that root first on ``PYTHONPATH``:
every subprocess then runs this tree's harness with this tree's fakesys.
"""

from __future__ import annotations

import os

#: the checkout holding this package (and the ``fakesys`` it tests)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _importable_in_subprocesses() -> None:
    """Put ROOT first on PYTHONPATH (once), which every subprocess inherits."""
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if not paths or paths[0] != ROOT:
        os.environ["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in paths if p != ROOT])


_importable_in_subprocesses()
