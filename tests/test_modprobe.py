"""modprobe inside a fake answers as kmod's modprobe: a module the fake
does not have is not found (so a test that needs it skips instead of
passing on nothing), the words after the module are its options, ``-q``
silences the message but not the status, ``-a`` goes on after a missing
one.  The expected lines are kmod's formats (tools/modprobe.c)."""

from __future__ import annotations

import os

import pytest

from conftest import needs_ndctl, needs_root

pytestmark = needs_root

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
NOT_FOUND = f"modprobe: FATAL: Module cxl_test not found in directory /lib/modules/{os.uname().release}\n"


@pytest.fixture
def fake(fake_factory):
    return fake_factory(os.path.join(DATA, "empty-6.1.toml"))


def _run(fake, command: str) -> tuple[int, str, str]:
    proc = fake.run(command)
    return proc.returncode, proc.stdout, proc.stderr


def test_a_module_the_fake_does_not_have_is_not_found(fake):
    assert _run(fake, "modprobe cxl_test") == (1, "", NOT_FOUND)
    assert _run(fake, "modprobe cxl_test interleave_arithmetic=1") == (1, "", NOT_FOUND)
    assert _run(fake, "modprobe -q cxl_test") == (1, "", "")
    assert _run(fake, "modprobe -r cxl_test") == (1, "", "modprobe: FATAL: Module cxl_test not found.\n")
    assert _run(fake, "modprobe -r cxl-test") == (1, "", "modprobe: FATAL: Module cxl-test not found.\n")
    assert _run(fake, "modprobe") == (1, "", "modprobe: ERROR: missing parameters. See -h.\n")
    assert not os.path.exists(os.path.join(fake.mnt, "sys/bus/cxl"))
    assert not os.path.exists(os.path.join(fake.mnt, "sys/bus/nd"))   # nothing else loaded either


def test_the_words_after_the_module_are_its_options(fake):
    assert _run(fake, "modprobe nfit_test no_such_module") == (0, "", "")
    assert fake.sys("bus/nd/devices/ndbus0/provider") == "nfit_test.0\n"


def test_all_goes_on_after_a_missing_module(fake):
    rc, out, err = _run(fake, "modprobe -a cxl_test nfit_test")
    assert (rc, out) == (1, "")
    assert err == NOT_FOUND.replace("FATAL", "WARNING")
    assert fake.sys("bus/nd/devices/ndbus0/provider") == "nfit_test.0\n"


def test_the_emulated_kernels_modules_are_there(fake):
    assert _run(fake, "modprobe libnvdimm && modprobe -q nd_pmem && modprobe kmem") == (0, "", "")


@needs_ndctl
def test_reloading_nfit_test_reuses_the_released_ids(fake):
    """Region, DIMM and bus ids are ida-freed when their devices are
    released, so a reloaded nfit_test gets the same names again (the
    platform driver's remove unregisters the bus before its device goes)."""
    names = []
    for _ in range(3):
        assert _run(fake, "modprobe nfit_test")[0] == 0
        regions = fake.json("ndctl list -R -i")
        dimms = fake.json("ndctl list -D -i")
        names.append((sorted(r["dev"] for r in regions), sorted(d["dev"] for d in dimms)))
        fake.run("ndctl disable-region all", check=True)
        assert _run(fake, "modprobe -r nfit_test") == (0, "", "")
    assert names[0][0] and names[0][1]
    assert names[1] == names[0] and names[2] == names[0]


# set_cookie of each nfit_test region as Linux 6.1 showed it after `modprobe
# nfit_test` (../shared/golden/nfit_test, sysfs/after-modprobe.txt)
RECORDED_COOKIES = {"region0": "0x40e62f0cc00f58ac\n", "region1": "0xa76c6907811fae57\n",
                    "region2": "0xe03b0a7be006abd6\n", "region3": "0x0\n"}


def test_nfit_test_interleave_sets_have_the_recorded_cookies(fake):
    """nfit_test's memdevs carry made-up region offsets (1, 1<<8; 1<<16 ...
    1<<40) whose memcmp order is the reverse of their numeric one, so its
    v1.1 altcookie differs from cookie1: the legacy label images of ndctl's
    label-compat test carry that altcookie."""
    assert _run(fake, "modprobe nfit_test")[0] == 0
    shown = {r: fake.sys(f"bus/nd/devices/{r}/set_cookie") for r in RECORDED_COOKIES}
    assert shown == RECORDED_COOKIES
