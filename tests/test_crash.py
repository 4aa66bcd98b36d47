"""Crash consistency, short (the long run is scripts/crash).

The daemon is SIGKILLed in the middle of real ndctl create/destroy/
reconfigure operations (half the rounds from outside after a random delay,
half by itself right after its N-th media or label write), then brought
up again on the same state: the stale mount is cleaned, the label areas
are valid, untouched namespaces are back byte-identical, and the target of
the operation is in a state the kernel itself could leave
(harness/crash.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from conftest import needs_ndctl, needs_root
from fakesys import runtime
from harness.crash import CrashHarness, label_areas, run
from fakesys.platform.topology import default_path

pytestmark = [needs_root, needs_ndctl]


def test_kill_during_ndctl_then_boot_again():
    st = run(kills=3, seed=5, max_rounds=8)
    assert st.violations == []
    assert st.kills >= 2 and st.stale_mounts_cleaned == st.kills
    assert st.namespaces_checked > 0


def test_a_label_update_cut_between_dimms(tmp_path):
    """ndctl writes sector_size after size: the kernel rewrites the labels
    one DIMM after the other (UPDATING first), so a power loss can leave
    position 0 with the new lbasize and position 1 with the old.  The kernel
    boots that (create_namespace_pmem() takes lbasize from position 0), and
    so must the fake: its sector_size is position 0's, and the invariants
    after a crash hold.  The kill point is found by moving it one media or
    label write later each time, from before the last label writes."""
    h = CrashHarness(default_path(), str(tmp_path), seed=1, name=f"cut-{os.getpid()}")
    try:
        assert h.tool("ndctl create-namespace -r region0 -m raw -s 64M").returncode == 0
        h.down()
        base = str(tmp_path / "base")
        _copy(h.state, base)
        found = False
        for n in range(28, 48):
            shutil.rmtree(h.state)
            _copy(base, h.state)
            h.up()
            pid = h.pid()
            runtime.control(h.name, f"crash-after {n}")
            h.tool("ndctl create-namespace -f -e namespace0.0 -m sector")
            if runtime.status(h.name) is not None:
                break  # past the operation's last write
            h.wait_dead(pid)
            by_pos = {l.position: l for a in label_areas(h.topology, h.state).values()
                      for l in a["labels"]}
            if set(by_pos) != {0, 1} or by_pos[0].lbasize == by_pos[1].lbasize:
                continue
            h.up()
            shown = h.tool("cat /sys/bus/nd/devices/namespace0.0/sector_size").stdout
            assert f"[{by_pos[0].lbasize}]" in shown
            assert json.loads(runtime.control(h.name, "check crash", timeout=60))["violations"] == []
            found = True
            break
        assert found, "no kill point left the DIMMs' labels disagreeing"
    finally:
        h.down()


def test_a_claim_that_never_enabled_is_gone_after_a_crash(tmp_path):
    """ndctl's reconfigure of a 16 MiB namespace to sector fails (a v1.1 BTT
    needs 16 MiB after its 4 KiB offset) and cannot delete the namespace its
    btt seed still claims: `mode` shows "safe" from an unbound claim, which
    is not on media, so after a crash the kernel boots the namespace raw.
    That is no damage to an untouched namespace (seed 3 of scripts/crash
    took it for one)."""
    h = CrashHarness(default_path(), str(tmp_path), seed=1, name=f"claim-{os.getpid()}")
    try:
        assert h.tool("ndctl create-namespace -r region1 -m raw -s 16M").returncode == 0
        assert h.tool("ndctl create-namespace -f -e namespace1.0 -m sector").returncode != 0
        before, _, media0 = h.observe()
        ((u, ns),) = before.items()
        assert (ns["mode"], ns["unbound_claim"]) == ("safe", True)
        pid = h.pid()
        runtime.control(h.name, "crash-after 1")
        target = {"uuid": "a0e1c3b2-9d4f-4c3b-8a2e-1f0d9c8b7a65", "mode": "raw", "size": 16 << 20}
        h.tool(f"ndctl create-namespace -r region2 -m raw -s 16M --uuid {target['uuid']}")
        h.wait_dead(pid)
        h.up()
        after, _, media = h.observe()
        assert after[u]["mode"] == "raw"
        h._verify("create", target, before, after, media0, media, complete=False)
        assert h.stats.violations == []
        # the same namespace with its mode from a bound claim must come back so
        h._verify("create", target, {u: {**ns, "unbound_claim": False}}, after, media0, media,
                  complete=False)
        assert len(h.stats.violations) == 1 and "untouched namespace" in h.stats.violations[0]
    finally:
        h.down()


def _copy(src: str, dst: str) -> None:
    """A copy of a state directory that keeps its media files sparse."""
    subprocess.run(["cp", "-a", "--sparse=always", src, dst], check=True)


