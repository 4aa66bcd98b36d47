"""Host safety: the host's /sys and /dev, files outside the state directory,
other users, permissions.

* the mount point may never be (or lie below) the host's /sys, /dev or
  /proc, whatever links lead there, and the daemon refuses such a rundir;
* the binds over /sys and /dev happen only in a mount namespace the
  launcher created for the command (refused otherwise);
* names and values written through the mount never become paths: writes
  of names with '/', '..' and NUL to every attribute that takes a name
  create nothing outside the state directory and cost no fault;
* the mount is the invoking user's alone (no allow_other): another user,
  even one inside ``fakesys run``, cannot read or write it;
* attributes carry sysfs modes (0444/0644/0200/0400, root-owned) and the
  kernel enforces them: write bits are needed to write, read bits to read;
* a fake answers the control verbs that change it for a test (the crash
  harness's ``crash-after N``) only when it was started for that harness
  (``fakesys up --harness harness.crash``); others refuse them as unknown.

In-process writes outside the state directory are covered by the audit
hook of tests/test_fuzz.py; the daemon's fault containment by
tests/test_fuse_faults.py.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

from conftest import ROOT, needs_ndctl, needs_root
from fakesys import runtime
from fakesys.fuse.server import mount_options
from fakesys.sandbox.namespace import SandboxError, mount_namespace, require_private_namespace

NOBODY = 65534


@pytest.mark.parametrize("path", ["/sys", "/sys/", "/sys/bus/nd", "/dev", "/dev/shm/x", "/proc/1", "/"])
def test_host_paths_are_refused(path):
    with pytest.raises(runtime.RuntimeErrorFakesys):
        runtime.refuse_host_paths(path)


@pytest.mark.parametrize("target", ["/sys", "/dev/shm", "/proc/self"])
def test_links_to_host_paths_are_refused(tmp_path, target):
    link = tmp_path / "mnt"
    link.symlink_to(target)
    with pytest.raises(runtime.RuntimeErrorFakesys):
        runtime.refuse_host_paths(str(link))


@pytest.mark.parametrize("path", ["/sysfoo", "/devices", "/tmp/x/sys", "/run/fakesys/a/mnt"])
def test_other_paths_are_allowed(path):
    runtime.refuse_host_paths(path)


@needs_root
def test_the_daemon_refuses_a_mount_point_on_the_host_dev(tmp_path):
    """A rundir whose mnt leads into /dev: the daemon exits without mounting."""
    rundir = tmp_path / "rundir"
    rundir.mkdir()
    target = "/dev/shm"
    (rundir / "mnt").symlink_to(target)
    proc = subprocess.run([sys.executable, "-m", "fakesys.daemon", "--topology",
                           os.path.join(ROOT, "devices/default.toml"), "--rundir", str(rundir),
                           "--name", "evil", "--log", str(tmp_path / "log")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "refusing to mount on /dev/shm" in (tmp_path / "log").read_text()
    assert "fakesys-evil" not in open("/proc/self/mountinfo").read()   # its fsname: nothing mounted


def test_binds_need_a_private_mount_namespace():
    """In the host's mount namespace the launcher refuses before mounting."""
    with pytest.raises(SandboxError, match="not in a private mount namespace"):
        require_private_namespace(mount_namespace())


@needs_root
def test_in_a_fresh_namespace_the_guard_passes():
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            from fakesys.sandbox.namespace import CLONE_NEWNS, make_private, unshare
            host = mount_namespace()
            unshare(CLONE_NEWNS)
            make_private()
            require_private_namespace(host)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


NAME_ATTRS = ["bus/nd/drivers/nd_pmem/bind", "bus/nd/drivers/nd_pmem/unbind", "bus/nd/drivers_probe",
              "bus/nd/devices/pfn1.0/namespace", "bus/nd/devices/namespace1.0/alt_name",
              "bus/dax/drivers/device_dax/new_id", "bus/dax/drivers/device_dax/remove_id",
              "devices/platform/hmem.3/driver_override", "devices/platform/hmem.3/dax_region/delete",
              "bus/nd/devices/namespace1.0/uuid", "bus/platform/drivers/hmem/bind"]
EVIL = [b"../../../../../tmp/fakesys-escape\n", b"/tmp/fakesys-escape", b"..", b"../..\n",
        b"a/b/c", b"namespace1.0/../../x", b"nul\0../../tmp/fakesys-escape", b"region1\0/etc",
        b"\0", b"/", b"x" * 4096]


@needs_root
def test_names_through_the_mount_never_become_paths(fake_factory, tmp_path):
    state = tmp_path / "deep" / "state"
    fake = fake_factory("default.toml", state=str(state))
    fake.write("bus/nd/devices/namespace1.0/uuid", "6bfa5b2f-3b0c-4b93-9d3b-44e8b5d7a1a0\n")
    files_before = sorted(p.name for p in state.iterdir())
    for attr in NAME_ATTRS:
        for value in EVIL:
            try:
                fake.write(attr, value.decode("latin-1"))
            except OSError as e:
                assert e.errno not in (0, errno.EIO) or attr.endswith("alt_name"), (attr, value, e)
    assert not os.path.exists("/tmp/fakesys-escape")
    assert sorted(p.name for p in state.iterdir()) == files_before
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["state"]
    reply = json.loads(runtime.control(fake.name, "check"))
    assert reply["violations"] == [] and reply["faults"] == 0


def test_allow_other_is_off_by_default():
    assert "allow_other" not in mount_options("x")
    assert "default_permissions" in mount_options("x")


@needs_root
def test_the_mount_is_private_to_its_user(fake):
    line = next(l for l in open("/proc/self/mountinfo") if l.split()[4] == fake.mnt)
    super_opts = line.split(" - ", 1)[1].split()[2].split(",")
    assert "allow_other" not in super_opts and "default_permissions" in super_opts
    assert "user_id=0" in super_opts and "nodev" in line.split()[5] and "nosuid" in line.split()[5]
    # another user is refused by the kernel before any permission bit is
    # looked at: even given a handle on the mount's root
    fd = os.open(fake.mnt, os.O_PATH | os.O_DIRECTORY)
    try:
        pid = os.fork()
        if pid == 0:
            code = 99
            try:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                os.stat("sys", dir_fd=fd)
                code = 0
            except OSError as e:
                code = e.errno
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == errno.EACCES


SYSFS_MODES = {0o444, 0o644, 0o200, 0o400, 0o600, 0o220, 0o664, 0o666}


@needs_root
def test_sysfs_modes_root_owned(fake):
    base = os.path.join(fake.mnt, "sys")
    modes = set()
    for dirpath, dirnames, filenames in os.walk(base):
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(st.st_mode):
                modes.add(stat.S_IMODE(st.st_mode))
                assert (st.st_uid, st.st_gid) == (0, 0)
        st = os.lstat(dirpath)
        assert stat.S_IMODE(st.st_mode) == 0o755 and st.st_uid == 0
    assert {0o444, 0o644, 0o200, 0o400} <= modes <= SYSFS_MODES
    # the kernel enforces them for root too (kernfs rules): no write bit, no write
    for path, flags in (("bus/nd/devices/region1/size", os.O_WRONLY),          # 0444
                        ("bus/nd/drivers/nd_pmem/bind", os.O_RDONLY)):        # 0200
        with pytest.raises(OSError) as e:
            os.open(os.path.join(base, path), flags)
        assert e.value.errno == errno.EACCES


def _setpriv_usable() -> str | None:
    if os.getuid() != 0:
        return "needs root to switch to an unprivileged user"
    if shutil.which("setpriv") is None:
        return "setpriv missing"
    return None


@needs_root
@needs_ndctl
def test_an_unprivileged_process_inside_run_cannot_write_root_attributes(fake):
    """Inside a root ``fakesys run``, a process switched to user 65534 can
    neither write a root-only attribute nor read the tree: the mount is
    root's alone (no allow_other), and the modes are root-owned sysfs ones."""
    why = _setpriv_usable()
    if why:
        pytest.skip(why)
    before = fake.sys("bus/nd/devices/region1/align")
    script = ("setpriv --reuid=65534 --regid=65534 --clear-groups sh -c "
              "'echo 0x200000 > /sys/bus/nd/devices/region1/align; echo w=$?; "
              "cat /sys/bus/nd/devices/region1/size; echo r=$?; id -u'")
    proc = fake.run(script)
    out = proc.stdout.split()
    assert out[0] != "w=0" and out[1] != "r=0" and out[-1] == "65534", proc.stdout
    assert "region1/align: Permission denied" in proc.stderr
    assert fake.sys("bus/nd/devices/region1/align") == before
    # root inside the same run writes it
    fake.run("echo 0x200000 > /sys/bus/nd/devices/region1/align", check=True)
    assert fake.sys("bus/nd/devices/region1/align") == "0x200000\n"


@needs_ndctl
def test_unprivileged_owner_sees_sysfs_modes_and_is_alone():
    """A fake brought up by user 65534 (fusermount3, user namespace): inside
    its ``fakesys run`` the tree is root-owned with sysfs modes, which the
    kernel enforces; root itself, outside, is not let in (no allow_other)."""
    from test_unprivileged import _usable
    why = _usable()
    if why:
        pytest.skip(why)
    # not under pytest's tmp_path: its parents are root's alone (0700)
    top = tempfile.mkdtemp(prefix="fakesys-unpriv-")
    state = os.path.join(top, "state")
    os.mkdir(state)
    os.chmod(top, 0o777)
    os.chmod(state, 0o777)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(state)}
    as_user = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
               sys.executable, "-m", "fakesys.cli"]
    name = f"unpriv-safety-{os.getpid()}"
    try:
        up = subprocess.run(as_user + ["up", "--name", name, "--state", str(state)], cwd=ROOT, env=env,
                            capture_output=True, text=True)
        assert up.returncode == 0, up.stderr
        mnt = up.stdout.strip()
        script = ("stat -c '%u %a' /sys/bus/nd/devices/region1/size /sys/bus/nd/devices/region1/align "
                  "/sys/bus/nd/drivers/nd_pmem/bind; echo 1 > /sys/bus/nd/devices/region1/size; echo w=$?")
        out = subprocess.run(as_user + ["run", "--name", name, "--", "sh", "-c", script],
                             cwd=ROOT, env=env, capture_output=True, text=True)
        assert out.stdout.split("\n")[:3] == ["0 444", "0 644", "0 200"], out.stdout + out.stderr
        assert "w=0" not in out.stdout and "size: Permission denied" in out.stderr
        with pytest.raises(OSError) as e:
            os.stat(os.path.join(mnt, "sys"))
        assert e.value.errno == errno.EACCES
    finally:
        subprocess.run(as_user + ["down", "--name", name], cwd=ROOT, env=env, capture_output=True)
        shutil.rmtree(top, ignore_errors=True)


def test_only_a_harness_fake_answers_crash_after(fake_factory):
    """crash-after patches every media write to kill the daemon: a product
    fake must not offer it, a fake started for the crash harness must."""
    import harness      # noqa: F401  (puts this checkout on the daemon's PYTHONPATH)
    normal = fake_factory("default.toml")
    assert runtime.control(normal.name, "crash-after 0").strip() == "error unknown command"
    assert runtime.control(normal.name, "crash-after 5").strip() == "error unknown command"
    assert runtime.status(normal.name)["harness"] is None
    crash = fake_factory("default.toml", up_args=("--harness", "harness.crash"))
    assert runtime.status(crash.name)["harness"] == "harness.crash"
    assert runtime.control(crash.name, "crash-after x").strip() == "error unknown command"
    assert runtime.control(crash.name, "crash-after 0").strip() == "ok"      # 0 disarms
    assert crash.sys("bus/nd/devices/region0/size")       # still serving, nothing killed
    assert runtime.control(normal.name, "status")         # read-only verbs stay for both
    assert json.loads(runtime.control(crash.name, "check"))["violations"] == []
