"""The golden kmem, hmem and hmat sessions replayed against their machines.

``tests/data/golden/{kmem,hmem,hmat}/`` are copies of the oracle's
recordings (Debian 6.1 in QEMU 7.2, ndctl/daxctl 76.1): every command, the
``/proc/iomem`` snapshots and some sysfs dumps.  Every recorded command
must match (exit status and stdout; stderr too) except the ones listed
here, none of which is kernel state the fake could reproduce:

* ``ls -la`` listings (hmat 004 008 009 022 034 040): attributes have
  the size of their content rather than 4096 (the page cache cuts reads
  at st_size), ``/sys/devices/system`` has 3 of its 8 subdirectories and
  the fake only the HMAT and SRAT of the 8 ACPI tables.  hmem 005 matches
  with the recording's busybox; without busybox-static the format is
  coreutils' (the dates are normalised either way).
* ``dmesg`` (hmat 002 023 035 041): the real machine's kernel log.

(Node ``MemFree``/``MemUsed``, hmat 020 027 033 039, differ between two
real recordings too, and replay normalises them.)

Each dump must agree on the memory blocks, the nodes (their counters
aside) and the memory tiers, and every /proc/iomem snapshot must match.
"""

from __future__ import annotations

import io
import os
import re

import pytest

from conftest import needs_ndctl, needs_root
from fakesys import replay as rp

pytestmark = [needs_root, needs_ndctl]

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "data", "golden")
KNOWN = {
    "kmem": set(),
    "hmem": set() if rp.static_busybox() else {"005"},
    "hmat": {"002", "004", "008", "009", "022", "023", "034", "035", "040", "041"},
}
STDERR_KNOWN: dict[str, set[str]] = {}
MODELLED = ("/sys/devices/system/", "/sys/devices/virtual/memory_tiering", "/sys/bus/memory_tiering")


@pytest.mark.parametrize("scenario", sorted(KNOWN))
def test_replay(scenario):
    buf = io.StringIO()
    rp.replay(os.path.join(GOLDEN, scenario), verbose=True, out=buf)
    text = buf.getvalue()
    lines = text.splitlines()
    steps = [line.split("  ") for line in lines if line[:3].isdigit()]
    assert len(steps) == len([s for s in rp.load_session(os.path.join(GOLDEN, scenario)) if s.kind == "cmd"])
    mismatched = {seq for seq, verdict, *_ in steps if verdict != "match"}
    assert mismatched <= KNOWN[scenario], text
    stderr_line = lines[-2]
    differs = set(stderr_line.split("differs: ")[1].split()) if "differs: " in stderr_line else set()
    assert differs <= STDERR_KNOWN.get(scenario, set()), text
    dumps = [line for line in lines if line.startswith("DUMP  ")]
    assert dumps and all("/proc/iomem matches" in line for line in dumps), text
    diff_paths = re.findall(r"^    (?:missing|extra|type|mode|data|listerr)\s+(\S+)", text, re.M)
    assert not [p for p in diff_paths if p.startswith(MODELLED)], text
