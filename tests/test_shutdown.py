"""Clean shutdown: ``fakesys down``, SIGTERM and SIGINT unmount, flush and
exit, as an unmount from outside makes the daemon flush and exit; a mount
left by a killed daemon is detected and cleaned by the next ``up`` on the
same name, which then works."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time

import pytest

from conftest import FAKESYS, ROOT, needs_ndctl, needs_root
from fakesys import runtime

pytestmark = [needs_root, needs_ndctl]


def _pid(fake) -> int:
    with open(os.path.join(runtime.rundir(fake.name), "pid")) as f:
        return int(f.read())


def _gone(pid: int, timeout: float = 20.0) -> bool:
    """The daemon exited with all its threads: a zombie leader alone.  Its
    files (the FUSE device among them) are closed by the last thread to
    exit, and until then the connection still takes requests."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                zombie = f.read().split(")")[-1].split()[0] == "Z"
            if zombie and len(os.listdir(f"/proc/{pid}/task")) == 1:
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.01)
    return False


def _stopped_cleanly(fake, pid: int) -> None:
    rd = runtime.rundir(fake.name)
    assert _gone(pid)
    assert not runtime.is_mounted(fake.mnt)
    assert not os.path.exists(os.path.join(rd, "pid")) and not os.path.exists(os.path.join(rd, "ctl"))
    if not os.path.exists(rd):
        return  # `fakesys down` removes the run directory of a daemon it stopped
    with open(os.path.join(rd, "log")) as f:
        assert f.read().rstrip().endswith("stopped")


@pytest.mark.parametrize("how", ["down", "SIGTERM", "SIGINT", "umount"])
def test_stop_unmounts_flushes_and_exits(fake, how):
    ns = fake.json("ndctl create-namespace -r region1 -m fsdax -s 32M")
    pid = _pid(fake)
    if how == "down":
        fake.down()
    elif how == "umount":  # from outside: the daemon has nothing left to serve
        subprocess.run(["umount", fake.mnt], check=True)
    else:
        os.kill(pid, getattr(signal, how))
    _stopped_cleanly(fake, pid)
    assert os.path.exists(runtime.rundir(fake.name)) == (how != "down")
    fake.up()  # same state: the namespace is back from its labels and info block
    got = fake.json("ndctl list -N")
    got = got if isinstance(got, list) else [got]
    assert [(n["uuid"], n["mode"], n["size"]) for n in got] == [(ns["uuid"], "fsdax", ns["size"])]


def test_a_stale_mount_is_cleaned_by_the_next_up(fake):
    fake.run("ndctl create-namespace -r region2 -m raw -s 64M", check=True)
    pid = _pid(fake)
    os.kill(pid, signal.SIGKILL)
    assert _gone(pid)
    assert runtime.is_mounted(fake.mnt)            # left behind, dead
    with pytest.raises(OSError) as e:
        os.listdir(os.path.join(fake.mnt, "sys"))
    assert e.value.errno == errno.ENOTCONN
    status = subprocess.run(FAKESYS + ["status"], capture_output=True, text=True, cwd=ROOT)
    assert f"{fake.name}\tstale" in status.stdout
    up = subprocess.run(FAKESYS + ["up", fake.topology, "--name", fake.name, "--state", fake.state],
                        capture_output=True, text=True, cwd=ROOT)
    assert up.returncode == 0 and "cleaned a stale mount" in up.stderr
    assert _pid(fake) != pid
    got = fake.json("ndctl list -N -r region2")
    assert [n["size"] for n in (got if isinstance(got, list) else [got])] == [64 << 20]


def test_a_hung_daemon_does_not_hang_the_next_up(fake):
    """A daemon that stopped answering (here: SIGSTOP; after a SIGKILL, one
    stuck in the kernel on its own mount) keeps its connection alive, and
    every access to the mount would hang.  ``up`` never looks up the mount
    point, aborts the dead connection (fusectl, in a private namespace) and
    mounts anew."""
    pid = _pid(fake)
    os.kill(pid, signal.SIGSTOP)
    try:
        up = subprocess.run(FAKESYS + ["up", fake.topology, "--name", fake.name, "--state", fake.state],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert up.returncode == 0 and "cleaned a stale mount" in up.stderr
        got = fake.json("ndctl list -R -r region1")
        assert [r["dev"] for r in (got if isinstance(got, list) else [got])] == ["region1"]
    finally:
        os.kill(pid, signal.SIGKILL)
        os.kill(pid, signal.SIGCONT)
