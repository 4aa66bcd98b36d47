"""Crash consistency, short (the long run is scripts/crash).

The daemon is SIGKILLed in the middle of real ndctl create/destroy/
reconfigure operations (half the rounds from outside after a random delay,
half by itself right after its N-th media or label write), then brought
up again on the same state: the stale mount is cleaned, the label areas
are valid, untouched namespaces are back byte-identical, and the target of
the operation is in a state the kernel itself could leave
(fakesys/testing/crash.py).
"""

from __future__ import annotations

from conftest import needs_ndctl, needs_root
from fakesys.testing.crash import run

pytestmark = [needs_root, needs_ndctl]


def test_kill_during_ndctl_then_boot_again():
    st = run(kills=3, seed=5, max_rounds=8)
    assert st.violations == []
    assert st.kills >= 2 and st.stale_mounts_cleaned == st.kills
    assert st.namespaces_checked > 0
