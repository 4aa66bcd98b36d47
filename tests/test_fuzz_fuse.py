"""Fuzzed writes through the FUSE mount with the real ndctl/daxctl interleaved
(short; the long run is ``scripts/fuzz``).

Every write goes through open/write on the mount: it succeeds or fails with
an errno, a refused one leaves everything the model shows unchanged, the
daemon's invariants hold and it contained no fault; every attribute read
back through the mount (the kernel's page cache) equals what the model
shows (harness/fusefuzz.py).
"""

from __future__ import annotations

from conftest import needs_ndctl, needs_root
from harness.fusefuzz import FuseFuzz

pytestmark = [needs_root, needs_ndctl]


def test_fuzzed_writes_through_the_mount(fake):
    ff = FuseFuzz(fake.name, seed=3)
    for _ in range(45):
        ff.step()
    ff.verify_cache()
    assert ff.violations == []
    assert ff.stats.writes >= 25 and sum(ff.stats.rejected.values()) > 0
