"""The fake's sysfs at boot against the real kernel's, and the dump tooling.

``test_boot_matches_golden_nfit`` brings up ``devices/qemu-nvdimm.toml``
(the golden ``nfit`` machine: QEMU 7.2 pc,nvdimm=on with two 1 GiB NVDIMMs,
Debian 6.1 kernel), dumps what the oracle's ``sysdump-all`` dumps
(``python -m fakesys.sysdump --all`` inside ``fakesys run``) and diffs it
against the real kernel's boot dump, ``tests/data/golden/nfit/sysfs/boot.txt``
(a copy of the oracle's ``out/nfit/sysfs/boot.txt``).  Every golden entry
must exist with the same type, mode, link target and content, and every
golden directory must have exactly the same children (extras are
differences).  The only normalisation is uuids -> a placeholder.

Nothing is excluded: the memory blocks and NUMA nodes are modelled too
(``/sys/devices/system/memory``, ``/sys/devices/system/node``).  The
nodes' allocator counters (``meminfo``, ``numastat``, ``vmstat``) are
the topology's boot snapshot, taken from this recording (the
``[machine]`` table of ``devices/qemu-nvdimm.toml``).

The other tests pin the dumper's output format (against lines the C
dumper produces) and :func:`fakesys.sysdump.compare`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from fakesys import runtime, sysdump

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GOLDEN_BOOT = os.path.join(HERE, "data", "golden", "nfit", "sysfs", "boot.txt")
TOPOLOGY = os.path.join(ROOT, "devices", "qemu-nvdimm.toml")
EXCLUDE: tuple[str, ...] = ()
FAKESYS = [sys.executable, "-m", "fakesys.cli"]


@pytest.fixture
def nfit_fake(tmp_path):
    name = f"test-boot-{uuid.uuid4().hex[:10]}"
    # --no-ioctl: the ioctl bridge renumbers ndctlN/nmemN to the pty nodes that
    # stand for them (136:N); the model itself publishes the kernel's numbers.
    subprocess.run(FAKESYS + ["up", TOPOLOGY, "--no-ioctl", "--name", name, "--state", str(tmp_path / "state")],
                   check=True, capture_output=True, text=True, cwd=ROOT)
    try:
        yield name
    finally:
        subprocess.run(FAKESYS + ["down", "--name", name], capture_output=True, cwd=ROOT)
        runtime.remove_rundir(name)   # the run directory's log and mount point


def test_boot_matches_golden_nfit(nfit_fake):
    proc = subprocess.run(FAKESYS + ["run", "--name", nfit_fake, "--", sys.executable, "-m",
                                     "fakesys.sysdump", "--all"],
                          capture_output=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    ours = sysdump.parse(proc.stdout)
    golden = sysdump.load(GOLDEN_BOOT)
    diffs = sysdump.compare(ours, golden, exclude=EXCLUDE)
    if diffs:
        pytest.fail(f"{len(diffs)} differences from the real kernel's boot dump:\n"
                    + sysdump.report(diffs), pytrace=False)


def test_no_ioctl_traps_nothing(nfit_fake):
    """Without the bridge, nothing is trapped: an O_RDWR open (trapped for the
    dax data path when the bridge runs) reaches the kernel, and a read-only
    attribute refuses it with EACCES as kernfs does."""
    script = ("import errno, os\n"
              "os.close(os.open('/dev/null', os.O_RDWR))\n"
              "try:\n"
              "    os.open('/sys/bus/nd/devices/ndbus0/nfit/revision', os.O_RDWR)\n"
              "except OSError as e:\n"
              "    print(errno.errorcode[e.errno])\n")
    proc = subprocess.run(FAKESYS + ["run", "--name", nfit_fake, "--", sys.executable, "-c", script],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "EACCES\n"


# ---------------------------------------------------------------- the dumper

def test_dump_format(tmp_path):
    """Lines as the oracle's sysdump.c writes them (lstat, no link following,
    escapes, truncation, open errors, sorted children, depth limit)."""
    root = tmp_path / "t"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    (root / "b").write_bytes(b"a\tb\\c\x01\xff\n")
    os.chmod(root / "b", 0o644)
    (root / "B").write_bytes(b"x" * 4097)
    os.chmod(root / "B", 0o444)
    (root / "a").symlink_to("../t/b")
    (root / "d").mkdir(mode=0o700)
    os.chmod(root / "d", 0o700)
    (root / "d" / "deep").write_text("")
    os.mkfifo(root / "p", 0o600)
    os.chmod(root / "p", 0o600)

    lines = [l.decode() for l in sysdump.walk(str(root), maxdepth=1)]
    t = str(root)
    assert lines == [
        f"{t}\td\t0755\t{os.lstat(t).st_size}\t",
        f"{t}/B\tf\t0444\t4097\t={'x' * 4096}\\<TRUNC>",
        f"{t}/a\tl\t0777\t6\t->../t/b",
        f"{t}/b\tf\t0644\t8\t=a\\tb\\\\c\\x01\\xff\\n",
        f"{t}/d\td\t0700\t{os.lstat(t + '/d').st_size}\t",
        f"{t}/p\to\t0600\t0\t",
    ]
    assert [l.decode() for l in sysdump.walk(t + "/missing")] == [
        f"{t}/missing\t?\t-\t-\t!ENOENT No such file or directory (lstat)"]


def test_dump_open_error(tmp_path):
    """A file that cannot be opened: ``!ERRNAME strerror (open)``.  A
    dangling path below a file gives ENOTDIR at lstat."""
    f = tmp_path / "f"
    f.write_text("x")
    assert [l.decode() for l in sysdump.walk(f"{f}/x")] == [
        f"{f}/x\t?\t-\t-\t!ENOTDIR Not a directory (lstat)"]
    assert sysdump._file_data(os.fsencode(tmp_path / "nope")) == b"!ENOENT No such file or directory (open)"


def test_parse_round_trip():
    text = open(GOLDEN_BOOT, "rb").read()
    d = sysdump.parse(text)
    assert len(d) == len(text.splitlines())
    e = d["/sys/bus/nd/drivers_probe"]
    assert (e.type, e.mode, e.size, e.data) == ("f", "0200", "4096", "!EACCES Permission denied (open)")
    assert d["/sys/class/dax"].type == "?"
    assert "/sys/bus/nd" in d.roots() and "/sys/bus/nd/devices" not in d.roots()


# ---------------------------------------------------------------- compare

GOLD = """\
/r\td\t0755\t0\t
/r/a\tf\t0444\t4096\t=1\\n
/r/l\tl\t0777\t0\t->../x
/r/u\tf\t0644\t4096\t=0f612cf9-5295-42ab-a401-75f4d834e31c\\n
/r/s\td\t0755\t0\t
/skip\td\t0755\t0\t
/skip/x\tf\t0444\t4096\t=1\\n
"""


def test_compare_identical_and_uuid():
    ours = GOLD.replace("0f612cf9-5295-42ab-a401-75f4d834e31c", "6bfa5b2f-3b0c-4b93-9d3b-44e8b5d7a1a0")
    assert sysdump.compare(sysdump.parse(ours), sysdump.parse(GOLD)) == []


def test_compare_finds_each_kind():
    ours = (GOLD.replace("/r/a\tf\t0444\t4096\t=1", "/r/a\tf\t0644\t4096\t=2")
                .replace("->../x", "->../y")
                .replace("/r/s\td", "/r/s\tf")
                .replace("/skip/x\tf\t0444\t4096\t=1\\n\n", "")
            + "/r/extra\tf\t0444\t4096\t=\n")
    diffs = sysdump.compare(sysdump.parse(ours), sysdump.parse(GOLD), exclude=["/skip"])
    got = {(d.path, d.kind) for d in diffs}
    assert got == {("/r/a", "mode"), ("/r/a", "data"), ("/r/l", "data"), ("/r/s", "type"),
                   ("/r/extra", "extra")}, sysdump.report(diffs)
    # the nil uuid is not random: no placeholder for it; an upper-case uuid
    # is not how the kernel prints them
    ours2 = GOLD.replace("0f612cf9-5295-42ab-a401-75f4d834e31c", "00000000-0000-0000-0000-000000000000")
    assert [d.kind for d in sysdump.compare(sysdump.parse(ours2), sysdump.parse(GOLD))] == ["data"]
    ours3 = GOLD.replace("0f612cf9-5295-42ab-a401-75f4d834e31c", "0F612CF9-5295-42AB-A401-75F4D834E31C")
    assert [d.kind for d in sysdump.compare(sysdump.parse(ours3), sysdump.parse(GOLD))] == ["data"]
    # the excluded subtree may be missing entirely; roots restrict the comparison
    diffs = sysdump.compare(sysdump.parse(ours), sysdump.parse(GOLD), roots=["/r/l"])
    assert [(d.path, d.kind) for d in diffs] == [("/r/l", "data")]
    missing = sysdump.compare(sysdump.parse(""), sysdump.parse(GOLD), roots=["/skip"])
    assert [(d.path, d.kind) for d in missing] == [("/skip", "missing"), ("/skip/x", "missing")]
