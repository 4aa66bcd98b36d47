"""The real ndctl's DIMM label commands through the ioctl bridge.

Every test brings up the golden QEMU machine (devices/qemu-nvdimm.toml: two
DIMMs with blank 128 KiB label areas) with a fresh state directory and runs
Debian's unmodified ndctl inside ``fakesys run``; its GET/SET_CONFIG_DATA
ioctls on /dev/nmemN are trapped by seccomp and served by the daemon.
Expected outputs are the recordings of the real 6.1 kernel
(tests/data/nfit-labels/NNN.{cmd,out,err,rc}, copied from the golden
``nfit`` scenario; NNN is the command's number there).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import FAKESYS, ROOT, needs_ndctl, needs_root

pytestmark = [needs_root, needs_ndctl]

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
GOLDEN = os.path.join(DATA, "nfit-labels")
QEMU = "qemu-nvdimm.toml"
BLANK_ALIGNED = os.path.join(DATA, "blank-aligned.toml")
KIB128 = 128 << 10


def golden(n: str, what: str) -> str:
    with open(os.path.join(GOLDEN, f"{n}.{what}")) as f:
        return f.read()


def golden_bytes(name: str) -> bytes:
    path = os.path.join(GOLDEN, name)
    if not os.path.exists(path):
        path = os.path.join(DATA, name)
    with open(path, "rb") as f:
        return f.read()


def replay(fake, n: str, stdout: bool = True, stderr: bool = True):
    """Run recorded command NNN; compare exit status (and output) with the recording."""
    proc = fake.run(golden(n, "cmd").strip())
    assert proc.returncode == int(golden(n, "rc")), proc.stderr
    if stdout:
        assert proc.stdout == golden(n, "out")
    if stderr:
        assert proc.stderr == golden(n, "err")
    return proc


@pytest.fixture
def qemu(fake_factory):
    return fake_factory(QEMU)


def init_all(fake) -> None:
    fake.run("ndctl disable-region all", check=True)
    replay(fake, "022")                                 # ndctl init-labels all


def test_nodes_are_char_devices_with_the_sysfs_numbers(qemu):
    out = qemu.run("for d in ndctl0 nmem0 nmem1; do stat -L -c '%F %t:%T' /dev/$d; done; "
                   "cat /sys/class/nd/ndctl0/dev /sys/bus/nd/devices/nmem0/dev /sys/bus/nd/devices/nmem1/dev",
                   check=True).stdout.split("\n")
    for node, numbers in zip(out[:3], out[3:6]):
        kind, hexnums = node.rsplit(" ", 1)
        assert kind == "character special file"
        major, minor = (int(x, 16) for x in hexnums.split(":"))
        assert f"{major}:{minor}" == numbers
    # /sys/dev/char follows the node numbers
    assert qemu.run(f"readlink /sys/dev/char/{out[4]}", check=True).stdout.strip().endswith("/nmem0")


def test_read_labels_json_blank(qemu):
    replay(qemu, "015")


def test_check_labels_blank_fails(qemu):
    replay(qemu, "018")


def test_init_labels_refused_while_regions_active(qemu):
    replay(qemu, "019")
    assert qemu.run("ndctl read-labels nmem0 -o /dev/stdout", check=True).stdout == "\0" * KIB128


def test_init_labels_all_makes_regions_label_backed(qemu, tmp_path):
    init_all(qemu)
    proc = qemu.run("ndctl check-labels nmem0")
    assert (proc.returncode, proc.stderr) == (0, "successfully verified 1 nmem label\n")
    replay(qemu, "024")                                 # read-labels -j nmem0
    for dimm in ("nmem0", "nmem1"):
        out = tmp_path / f"{dimm}.bin"
        qemu.run(f"ndctl read-labels {dimm} -o {out}", check=True)
        assert out.read_bytes() == golden_bytes(f"{dimm}-after-init.bin")
    assert qemu.sys("bus/nd/devices/nmem0/flags") == "label \n"
    assert qemu.sys("bus/nd/devices/nmem0/available_slots") == "1019\n"
    replay(qemu, "027")                                 # enable-region all
    assert qemu.sys("bus/nd/devices/region0/nstype") == "5\n"
    regions = {r["dev"]: r for r in qemu.json("ndctl list -R")}
    assert regions["region0"]["iset_id"] == 0x2468AC00123456       # set_cookie: labels valid
    assert regions["region1"]["iset_id"] == 0x2468AE00123457
    replay(qemu, "028", stderr=False)                   # ndctl list -BDRNiu -vvv


def test_zero_labels(qemu):
    init_all(qemu)
    replay(qemu, "087")                                 # zero-labels all (regions still disabled)
    replay(qemu, "088")                                 # read-labels -j nmem0: blank again
    assert qemu.run("ndctl read-labels nmem1 -o /dev/stdout", check=True).stdout == "\0" * KIB128


def test_write_labels_round_trip(qemu, tmp_path):
    image = tmp_path / "in.bin"
    image.write_bytes(golden_bytes("nmem0-after-init.bin"))
    proc = qemu.run(f"ndctl write-labels -i {image} nmem0")
    # ndctl checks the DIMM state itself, aborts, yet counts it and exits 0
    assert proc.stderr.startswith("dimm is active, abort label write\n")
    assert qemu.run("ndctl read-labels nmem0 -o /dev/stdout", check=True).stdout == "\0" * KIB128
    qemu.run("ndctl disable-region region0", check=True)
    proc = qemu.run(f"ndctl write-labels -i {image} nmem0")
    assert (proc.returncode, proc.stderr) == (0, "wrote 1 nmem\n")
    back = tmp_path / "out.bin"
    qemu.run(f"ndctl read-labels nmem0 -o {back}", check=True)
    assert back.read_bytes() == image.read_bytes()
    assert qemu.run("ndctl check-labels nmem0").returncode == 0


def test_init_labels_v12(qemu):
    qemu.run("ndctl disable-region region0", check=True)
    proc = qemu.run("ndctl init-labels -f -V 1.2 nmem0")
    assert (proc.returncode, proc.stderr) == (0, "initialized 1 nmem\n")
    index = qemu.json("ndctl read-labels -j nmem0")[0]["index"]
    assert [(i["major"], i["minor"], i["labelsize"], i["nslot"], i["seq"]) for i in index] == [
        (1, 2, 256, 510, 3), (1, 2, 256, 510, 2)]
    assert qemu.sys("bus/nd/devices/nmem0/available_slots") == "509\n"
    qemu.run("ndctl enable-region region0", check=True)
    assert qemu.sys("bus/nd/devices/region0/nstype") == "5\n"
    assert qemu.sys("bus/nd/devices/region1/nstype") == "4\n"


def test_autolabel_on_reconfigure(fake_factory):
    fake = fake_factory(BLANK_ALIGNED)
    assert fake.sys("bus/nd/devices/region0/nstype") == "4\n"
    ns = fake.json("ndctl create-namespace -f -e namespace0.0 -m fsdax")
    assert ns["mode"] == "fsdax" and ns["dev"] == "namespace0.0"
    assert fake.sys("bus/nd/devices/region0/nstype") == "5\n"
    labels = fake.json("ndctl read-labels -j nmem0")[0]
    assert labels["index"][0]["labelsize"] == 256       # ndctl tries v1.2 first
    assert any(label["rawsize"] > 0 for label in labels["label"])


# -- the bridge itself, through real system calls -----------------------------------------

PROBE = r"""
import errno, fcntl, os, struct, sys
GET_CONFIG_SIZE = 0xC00C4E04
GET_CONFIG_DATA = 0xC00C4E05
def get_size(fd):
    buf = bytearray(12)
    try:
        rc = fcntl.ioctl(fd, GET_CONFIG_SIZE, buf)
    except OSError as e:
        return errno.errorcode[e.errno]
    return [rc, *struct.unpack("<III", buf)]
rw = os.open("/dev/nmem0", os.O_RDWR)
ro = os.open("/dev/nmem0", os.O_RDONLY)
data = bytearray(struct.pack("<III", 0, 16, 0) + bytes(16))
fcntl.ioctl(ro, GET_CONFIG_DATA, data)
print(get_size(rw), get_size(ro), list(data[:12]))
try:
    fcntl.ioctl(rw, 0xC0004E0B, bytearray(16))
except OSError as e:
    print(errno.errorcode[e.errno])
sys.stdout.flush()
if len(sys.argv) > 1:
    sys.stdin.readline()
    print(get_size(rw), flush=True)
"""


def test_ioctl_results_and_errnos(qemu):
    out = qemu.run(f"{sys.executable} -c '{PROBE}'", check=True).stdout.split("\n")
    # GET_CONFIG_SIZE read-only: EPERM (the kernel's read-only check goes by
    # the bare number, and 4 is also the bus's CLEAR_ERROR); GET_CONFIG_DATA is fine
    assert out[0] == "[0, 0, 131072, 4076] EPERM [0, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0]"
    assert out[1] == "ENOTTY"                                     # nr 11


def test_daemon_gone_fails_instead_of_hanging(qemu):
    proc = subprocess.Popen(FAKESYS + ["run", "--name", qemu.name, "--", sys.executable, "-c", PROBE, "wait"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    try:
        assert proc.stdout.readline().startswith("[0, 0, 131072, 4076]")
        proc.stdout.readline()
        qemu.down()
        out, err = proc.communicate("go\n", timeout=30)
    finally:
        proc.kill()
    assert out.strip() == "ENOSYS", err
