"""Firmware update and activation on nfit_test.0 through the real ndctl.

nfit_test's platform grants 3 s of quiesce time and each armed DIMM costs
1 s, so arming the fourth DIMM overflows the bus; after an activation the
platform is busy for 3 s, then each DIMM reports how the activation went.
The kernel side (nvdimm firmware groups, the NFIT's Intel ops) turns that
into the sysfs states and errnos checked here.
"""

from __future__ import annotations

import errno
import os
import time

import pytest

from conftest import needs_ndctl, needs_root

pytestmark = [needs_root, needs_ndctl]

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
IMAGE = "/tmp/fakesys-fw.img"
BUSY_SECONDS = 3.2      # nfit_test's busy spell after an activation, and a margin


@pytest.fixture
def nfit_test(fake_factory):
    fake = fake_factory(os.path.join(DATA, "empty-6.1.toml"))
    proc = fake.run("modprobe nfit_test")
    assert proc.returncode == 0, proc.stderr
    fake.run("ndctl wait-scrub nfit_test.0", check=True)
    bus = next(b["dev"] for b in fake.json("ndctl list -B") if b["provider"] == "nfit_test.0")
    fake.bus = f"bus/nd/devices/{bus}"
    fake.dimms = sorted(d["dev"] for d in fake.json("ndctl list -b nfit_test.0 -D"))
    return fake


def states(entries) -> dict[str, str]:
    return {d["dev"]: d["firmware"]["activate_state"] for d in entries}


def update_all(fake):
    return fake.json(f"truncate -s 196608 {IMAGE} && ndctl update-firmware -b nfit_test.0 -f {IMAGE} all")


def dimm_attr(fake, dimm: str, name: str) -> str:
    return fake.sys(f"bus/nd/devices/{dimm}/firmware/{name}")


def after_busy(fake) -> None:
    """Wait out the busy spell, then look at the DIMMs the way ndctl does.

    The kernel keeps a DIMM's result cached until its state is asked for
    again (intel_fwa_result()), and the fake serves what each attribute
    showed at the last change; ``ndctl list -DF`` reads every DIMM's state
    then result and asks each for its firmware info, which is a change."""
    time.sleep(BUSY_SECONDS)
    fake.run("ndctl list -b nfit_test.0 -DF", check=True)


def test_update_all_arms_three_and_the_fourth_overflows(nfit_test):
    assert nfit_test.sys(f"{nfit_test.bus}/firmware/capability") == "quiesce\n"
    assert nfit_test.json("ndctl list -b nfit_test.0 -F")[0]["firmware"]["activate_method"] == "suspend"
    got = update_all(nfit_test)
    assert sorted(states(got).values()) == ["armed", "armed", "armed", "idle"]
    for d in got:       # every DIMM took the image, armed or not
        assert d["firmware"]["next_version"] == 0xFFFFFFFFABCD   # INTEL_FW_FAKE_VERSION
    assert nfit_test.sys(f"{nfit_test.bus}/firmware/activate") == "armed\n"

    idle = next(dev for dev, s in states(got).items() if s == "idle")
    forced = nfit_test.json(f"ndctl update-firmware -b nfit_test.0 {idle} -A --force")
    assert states(forced) == {idle: "armed"}
    assert nfit_test.sys(f"{nfit_test.bus}/firmware/activate") == "overflow\n"
    assert nfit_test.json("ndctl list -b nfit_test.0 -F")[0]["firmware"]["activate_state"] == "overflow"

    disarmed = nfit_test.json("ndctl update-firmware -b nfit_test.0 -D all")
    assert set(states(disarmed).values()) == {"idle"} and len(disarmed) == 4
    assert nfit_test.sys(f"{nfit_test.bus}/firmware/activate") == "idle\n"


def test_activate_goes_busy_then_reports_success(nfit_test):
    update_all(nfit_test)
    armed = nfit_test.json("ndctl update-firmware -b nfit_test.0 -A --force all")
    assert set(states(armed).values()) == {"armed"}
    out = nfit_test.json("ndctl activate-firmware -v nfit_test.0")
    assert set(states(out[0]["dimms"]).values()) == {"busy"}
    assert nfit_test.sys(f"{nfit_test.bus}/firmware/activate") == "busy\n"
    dimm = nfit_test.dimms[0]
    # busy: neither a new activation nor a change of arm state
    assert nfit_test.refused(f"{nfit_test.bus}/firmware/activate", "live\n") == errno.EBUSY
    assert nfit_test.refused(f"bus/nd/devices/{dimm}/firmware/activate", "arm\n") == errno.EBUSY
    after_busy(nfit_test)
    assert nfit_test.sys(f"{nfit_test.bus}/firmware/activate") == "idle\n"
    for d in nfit_test.dimms:
        assert dimm_attr(nfit_test, d, "activate") == "idle\n"
        assert dimm_attr(nfit_test, d, "result") == "success\n"


def test_armed_without_an_image_misses_the_activation(nfit_test):
    dimm = nfit_test.dimms[1]
    assert dimm_attr(nfit_test, dimm, "result") == "none\n"
    nfit_test.write(f"bus/nd/devices/{dimm}/firmware/activate", "arm\n")
    assert dimm_attr(nfit_test, dimm, "activate") == "armed\n"
    assert nfit_test.sys(f"{nfit_test.bus}/firmware/activate") == "armed\n"
    nfit_test.write(f"{nfit_test.bus}/firmware/activate", "live\n")
    after_busy(nfit_test)
    assert dimm_attr(nfit_test, dimm, "result") == "not_staged\n"
    assert dimm_attr(nfit_test, nfit_test.dimms[0], "result") == "none\n"   # not armed: not part of it


def test_bad_firmware_writes_get_the_kernel_errno(nfit_test):
    bus, dimm = nfit_test.bus, nfit_test.dimms[0]
    assert nfit_test.refused(f"bus/nd/devices/{dimm}/firmware/activate", "armed\n") == errno.EINVAL
    assert nfit_test.refused(f"{bus}/firmware/activate", "now\n") == errno.EINVAL
    # nothing armed: nothing to activate
    assert nfit_test.refused(f"{bus}/firmware/activate", "quiesce\n") == errno.ENXIO
    # disarming an idle DIMM, arming an armed one: accepted, no change
    nfit_test.write(f"bus/nd/devices/{dimm}/firmware/activate", "disarm")
    nfit_test.write(f"bus/nd/devices/{dimm}/firmware/activate", "arm")
    nfit_test.write(f"bus/nd/devices/{dimm}/firmware/activate", "arm")
    assert dimm_attr(nfit_test, dimm, "activate") == "armed\n"
    noidle = f"{bus}/nfit/firmware_activate_noidle"
    assert nfit_test.refused(noidle, "maybe\n") == errno.EINVAL
    nfit_test.write(noidle, "1\n")
    assert nfit_test.sys(noidle) == "Y\n"
    nfit_test.write(noidle, "0\n")
    assert nfit_test.sys(noidle) == "N\n"


def test_nfit_test_1_has_no_firmware_activation(nfit_test):
    bus = next(b["dev"] for b in nfit_test.json("ndctl list -B") if b["provider"] == "nfit_test.1")
    assert os.listdir(os.path.join(nfit_test.mnt, "sys/bus/nd/devices", bus, "firmware")) == []
    dimms = [d["dev"] for d in nfit_test.json("ndctl list -b nfit_test.1 -D")]
    for d in dimms:
        assert os.listdir(os.path.join(nfit_test.mnt, "sys/bus/nd/devices", d, "firmware")) == []
