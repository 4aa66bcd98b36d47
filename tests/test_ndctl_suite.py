"""Guard: the tests of ndctl's own suites that pass on fakesys keep passing.

ndctl v81's ``ndctl`` and ``dax`` suites (built from ../shared/ndctl by
harness/ndctl_suite.py, as scripts/ndctl-suite does) run unmodified inside
one ``fakesys run --topology devices/ndctl-test.toml`` (nfit_test as a
module, an ACPI.NFIT bus and an e820 range, as pmem/run_qemu gives ndctl's CI).  Every test listed
here passed there when it was added; each must still report PASS -- a SKIP
of one of them is a failure too (its precondition silently went away, so
it no longer tests anything).  Grow the lists as fakesys passes more.

The fast tests run in ONE meson invocation (~45 s; device-dax-fio.sh,
fio over a devdax namespace, is 16 s of it).  The three
sleep-bound ones (clear.sh ~26 s, inject-error.sh ~26 s, monitor.sh
~52 s: they wait on the scrub and on the monitor's polling) are marked
``slow`` and left out of the default run to keep the whole pytest suite
well under its 10-minute budget; ``pytest -m slow tests/test_ndctl_suite.py``
or scripts/ndctl-suite runs them.

``revoke-devmem`` passed on a machine without an e820 namespace having
found nothing to test (its 77 becomes success in ``ndctl_test_result()``);
with the e820 range here it runs, and fails: fakesys has no /dev/mem.
"""

from __future__ import annotations

import os

import pytest

from harness import ndctl_suite

from conftest import needs_root

pytestmark = needs_root

FAST = ("create.sh", "daxdev-errors.sh", "multi-dax.sh", "sector-mode.sh", "inject-smart.sh",
        "max_extent_ns", "track-uuid.sh", "dax-dev", "align.sh", "device-dax-fio.sh", "label-compat.sh")
SLOW = ("clear.sh", "inject-error.sh", "monitor.sh")
TOPOLOGY = "devices/ndctl-test.toml"
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
