"""The /dev/daxR.N data path: an application's O_RDWR open gets the media.

``tests/helpers/daxmap.c`` is the application (built once per session
with the system's C compiler): it opens the node O_RDWR, mmaps it
MAP_SHARED and writes or checks a pattern; each step is a separate
process, so a pattern read back went through two mappings of the device's
backing file (fakesys/dev/opentrap.py, daxmedia.py).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess

import pytest

from conftest import needs_ndctl, needs_root

CC = shutil.which("cc") or shutil.which("gcc")
pytestmark = [needs_root, needs_ndctl, pytest.mark.skipif(CC is None, reason="no C compiler")]

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "helpers", "daxmap.c")
MiB = 1 << 20
HELPER = ""


@pytest.fixture(scope="module", autouse=True)
def helper(tmp_path_factory):
    global HELPER
    HELPER = str(tmp_path_factory.mktemp("daxmap") / "daxmap")
    subprocess.run([CC, "-O2", "-Wall", "-o", HELPER, SOURCE], check=True)
    return HELPER


def daxmap(fake, *args: str):
    return fake.run(" ".join([HELPER, *args]))


def info(fake, path: str, how: str | None = None) -> dict:
    r = daxmap(fake, "info", path, *([how] if how else []))
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


@pytest.fixture
def hmem(fake_factory):
    return fake_factory("qemu-hmem.toml")


def test_mmap_pattern_through_two_processes(hmem):
    got = info(hmem, "/dev/dax0.0")
    assert got == {"lstat_chr": True, "rdev": [252, 0], "fstat_reg": True, "size": 512 * MiB,
                   "cloexec": False, "accmode": os.O_RDWR}
    assert daxmap(hmem, "write", "/dev/dax0.0", "0x5eed").stdout == "ok\n"
    assert daxmap(hmem, "check", "/dev/dax0.0", "0x5eed").stdout == "ok\n"
    assert daxmap(hmem, "check", "/dev/dax0.0", "0x5eee").returncode == 1
    # a relative path works too, and O_CLOEXEC is passed on to the fd
    r = hmem.run(f"cd /dev && {HELPER} info dax0.0 cloexec")
    assert json.loads(r.stdout)["cloexec"] is True and json.loads(r.stdout)["size"] == 512 * MiB


def test_open_needs_device_dax(hmem):
    hmem.run("daxctl disable-device dax0.0", check=True)
    r = daxmap(hmem, "info", "/dev/dax0.0")
    assert (r.returncode, r.stdout) == (2, f"errno {errno.ENXIO}\n")
    hmem.write("bus/dax/drivers/kmem/new_id", "dax0.0\n")        # kmem: no char device either
    assert daxmap(hmem, "info", "/dev/dax0.0").stdout == f"errno {errno.ENXIO}\n"
    # other access modes are not trapped: the node itself cannot be opened
    hmem.write("bus/dax/drivers/kmem/remove_id", "dax0.0\n")
    hmem.write("bus/dax/drivers/kmem/unbind", "dax0.0\n")
    hmem.write("bus/dax/drivers/device_dax/bind", "dax0.0\n")
    assert daxmap(hmem, "info", "/dev/dax0.0", "rdonly").returncode == 2
    assert info(hmem, "/dev/dax0.0")["size"] == 512 * MiB


def test_resize_and_destroy_follow_the_device(hmem):
    hmem.run("daxctl disable-device dax0.0 && daxctl reconfigure-device -s 0 dax0.0", check=True)
    (dev,) = hmem.json("daxctl create-device -r 0 -s 256M")
    node = f"/dev/{dev['chardev']}"
    assert info(hmem, node)["size"] == 256 * MiB
    assert daxmap(hmem, "write", node, "7").stdout == "ok\n"
    media = os.path.join(hmem.state, "dax", f"hmem.0-{dev['chardev']}.media")
    assert os.path.getsize(media) == 256 * MiB
    hmem.run(f"daxctl disable-device {dev['chardev']} && daxctl reconfigure-device -s 128M {dev['chardev']}"
             f" && daxctl enable-device {dev['chardev']}", check=True)
    assert info(hmem, node)["size"] == 128 * MiB
    hmem.run(f"daxctl destroy-device -f {dev['chardev']}", check=True)
    assert not os.path.exists(media)


def test_pmem_devdax_media_survives_down_and_up(fake_factory, tmp_path):
    state = str(tmp_path / "state")
    fake = fake_factory("default.toml", state)
    ns = fake.json("ndctl create-namespace -r region2 -m devdax -s 256M")
    chardev = ns["daxregion"]["devices"][0]["chardev"]
    node = f"/dev/{chardev}"
    assert daxmap(fake, "write", node, "0x1234").stdout == "ok\n"
    fake.run(f"ndctl disable-namespace {ns['dev']} && ndctl enable-namespace {ns['dev']}", check=True)
    assert daxmap(fake, "check", node, "0x1234").stdout == "ok\n"
    fake.down()
    again = fake_factory("default.toml", state)
    assert daxmap(again, "check", node, "0x1234").stdout == "ok\n"
