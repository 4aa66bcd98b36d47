"""Guard: the tests of ndctl's own suites that pass on fakesys keep passing.

ndctl v81's ``ndctl`` and ``dax`` suites (built from ../shared/ndctl by
harness/ndctl_suite.py, as scripts/ndctl-suite does) run unmodified inside
one ``fakesys run --topology devices/nfit_test.toml``.  Every test listed
here passed there when it was added; each must still report PASS -- a SKIP
of one of them is a failure too (its precondition silently went away, so
it no longer tests anything).  Grow the lists as fakesys passes more.

The fast tests run in ONE meson invocation (~25 s).  The three
sleep-bound ones (clear.sh ~26 s, inject-error.sh ~26 s, monitor.sh
~52 s: they wait on the scrub and on the monitor's polling) are marked
``slow`` and left out of the default run to keep the whole pytest suite
well under its 10-minute budget; ``pytest -m slow tests/test_ndctl_suite.py``
or scripts/ndctl-suite runs them.

Not guarded although meson says OK: ``revoke-devmem``.  With no e820
namespace it finds nothing to test and returns 77, which ndctl's
``ndctl_test_result()`` turns into success (one attempt, no skip
recorded): a vacuous pass until the fake has an e820 bus.
"""

from __future__ import annotations

import os

import pytest

from harness import ndctl_suite

from conftest import needs_root

pytestmark = needs_root

FAST = ("create.sh", "daxdev-errors.sh", "multi-dax.sh", "sector-mode.sh", "inject-smart.sh",
        "max_extent_ns", "track-uuid.sh")
SLOW = ("clear.sh", "inject-error.sh", "monitor.sh")
TOPOLOGY = "devices/nfit_test.toml"
TIMEOUT = 120.0


@pytest.fixture(scope="module")
def build():
    try:
        return ndctl_suite.ensure_built()
    except ndctl_suite.BuildUnavailable as e:
        pytest.skip(f"ndctl's test suite cannot be built here: {e}")


def _check(build, tests, logbase):
    results = ndctl_suite.run(tests=tests, topology=TOPOLOGY, timeout=TIMEOUT, build=build,
                              logbase=logbase)
    got = {name: (result, secs) for name, result, secs in results}
    bad = {t: got.get(t, ("MISSING", 0.0)) for t in tests if got.get(t, ("",))[0] != "PASS"}
    log = os.path.join(build, "meson-logs", f"{logbase}.txt")
    assert not bad, (f"ndctl tests that passed on fakesys no longer PASS: {bad} "
                     f"(meson's log: {log})")
    assert set(got) == set(tests), f"meson ran other tests than asked: {sorted(got)}"


def test_ndctl_suite_fast(build):
    _check(build, FAST, "testlog-guard")


@pytest.mark.slow
def test_ndctl_suite_slow(build):
    _check(build, SLOW, "testlog-guard-slow")
