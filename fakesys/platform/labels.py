"""Label areas a topology asks to have been initialized before boot.

A DIMM with ``labels = "v1.1"`` or ``"v1.2"`` boots as if an administrator
had run ``ndctl init-labels`` on it earlier: a blank area gets an empty,
valid index of that version; one that already validates (a reboot, or
labels written since) is left alone.  The writes are the kernel's own
label code (kernel/nvdimm/label.py), so the bytes are what it reads.
"""

from __future__ import annotations

from fakesys.kernel.nvdimm.dimm import LsaIo
from fakesys.kernel.nvdimm.label import LabelArea

LABEL_SIZES = {"v1.1": 128, "v1.2": 256}


def init_labels(lsa, labels: str) -> None:
    """``ndctl init-labels`` on label store ``lsa`` unless ``labels`` is
    "blank" or the area already holds a valid index."""
    if labels == "blank" or lsa is None or LabelArea(LsaIo(lsa)).validate():
        return
    LabelArea(LsaIo(lsa)).ndctl_init(LABEL_SIZES[labels])
