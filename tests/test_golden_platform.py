"""The golden e820 and virtio-pmem machines against the real kernel's recordings.

``tests/data/golden/{e820,virtio-pmem}/`` are copies of the oracle's
sessions (Debian 6.1 in QEMU 7.2, ndctl/daxctl 76.1): ``devices/e820.toml``
(``memmap=512M!2G``) and ``devices/virtio-pmem.toml`` must reproduce the
boot dump exactly (memory blocks and NUMA nodes included; the nodes'
counters are the topologies' boot snapshots, as in test_golden_boot.py) and
the output of every recorded command.

Known exceptions, both timing on the real machine rather than kernel
state, and listed here so that fixing them does not break the test:

* the first devdax namespace of a session (e820 015, virtio-pmem 008):
  ndctl printed its dax device ``"state":"disabled"`` because udev had not
  yet loaded device_dax for the new ``dax:t0`` modalias when ndctl read
  the device back; the fake loads the driver at once.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid

import pytest

from conftest import needs_ndctl, needs_root
from fakesys import runtime, sysdump
from fakesys import replay as rp

pytestmark = [needs_root, needs_ndctl]

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GOLDEN = os.path.join(HERE, "data", "golden")
EXCLUDE: tuple[str, ...] = ()
FAKESYS = [sys.executable, "-m", "fakesys.cli"]
MACHINES = {"e820": ("e820.toml", {"015"}), "virtio-pmem": ("virtio-pmem.toml", {"008"})}


@pytest.mark.parametrize("scenario", sorted(MACHINES))
def test_boot_dump(scenario, tmp_path):
    name = f"test-gp-{uuid.uuid4().hex[:10]}"
    topology = os.path.join(ROOT, "devices", MACHINES[scenario][0])
    # --no-ioctl: the kernel's own char device numbers (246:0 for ndctl0)
    subprocess.run(FAKESYS + ["up", topology, "--no-ioctl", "--name", name, "--state", str(tmp_path)],
                   check=True, capture_output=True, cwd=ROOT)
    try:
        proc = subprocess.run(FAKESYS + ["run", "--name", name, "--", sys.executable, "-m",
                                         "fakesys.sysdump", "--all"], capture_output=True, cwd=ROOT, timeout=60)
    finally:
        subprocess.run(FAKESYS + ["down", "--name", name], capture_output=True, cwd=ROOT)
        runtime.remove_rundir(name)
    assert proc.returncode == 0, proc.stderr.decode()
    golden = sysdump.load(os.path.join(GOLDEN, scenario, "sysfs", "boot.txt"))
    diffs = sysdump.compare(sysdump.parse(proc.stdout), golden, exclude=EXCLUDE)
    if diffs:
        pytest.fail(f"{len(diffs)} differences from the real kernel's {scenario} boot dump:\n"
                    + sysdump.report(diffs), pytrace=False)


@pytest.mark.parametrize("scenario", sorted(MACHINES))
def test_replay_session(scenario):
    """Every recorded command matches (stdout, exit status and stderr) but
    the known timing exceptions; the directory name selects the topology."""
    buf = io.StringIO()
    rp.replay(os.path.join(GOLDEN, scenario), verbose=True, out=buf)
    text = buf.getvalue()
    known = MACHINES[scenario][1]
    steps = [line.split("  ") for line in text.splitlines() if line[:3].isdigit()]
    assert len(steps) == len([s for s in rp.load_session(os.path.join(GOLDEN, scenario)) if s.kind == "cmd"])
    mismatched = {seq for seq, verdict, *_ in steps if verdict != "match"}
    assert mismatched <= known, text
    assert text.splitlines()[-2].startswith("stderr match: ") and "differs" not in text.splitlines()[-2], text
