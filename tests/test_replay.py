"""``fakesys replay``: output normalisation, and one short session end to end.

The end-to-end session uses the real kernel's recordings of the golden
``nfit`` machine's commands 003-014 (``ndctl list`` / ``daxctl list``
variants at boot), copied to ``tests/data/golden/nfit/cmds/``.

``tests/data/golden/hmat-rerun/cmds/`` holds a second real recording of the
golden ``hmat`` session (same oracle script, same kernel, some hours
later): the 15 stdouts that differ from the first recording
(``tests/data/golden/hmat/``); its other 26 stdouts and all 41 stderrs and
exit statuses are byte for byte the first recording's.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import subprocess
import sys

import pytest

from fakesys import replay as rp
from fakesys.sandbox import seccomp

HERE = os.path.dirname(os.path.abspath(__file__))
CMDS = os.path.join(HERE, "data", "golden", "nfit", "cmds")
BOOT_DUMP = os.path.join(HERE, "data", "golden", "nfit", "sysfs", "boot.txt")
HMAT = os.path.join(HERE, "data", "golden", "hmat", "cmds")
HMAT_RERUN = os.path.join(HERE, "data", "golden", "hmat-rerun", "cmds")
RERUN_DIFFERS = ["002", "004", "007", "008", "009", "020", "022", "023", "027", "033", "034", "035",
                 "039", "040", "041"]
needs_busybox = pytest.mark.skipif(rp.static_busybox() is None,
                                   reason=f"no static busybox at {rp.BUSYBOX} (busybox-static)")

U1 = "cb18670b-23ef-4212-83d0-c1390ff7cb51"
U2 = "b24edeb5-81a6-4d14-b909-d8556cc8c332"
V1 = "6bfa5b2f-3b0c-4b93-9d3b-44e8b5d7a1a0"
V2 = "0f612cf9-5295-42ab-a401-75f4d834e31c"
NIL = "00000000-0000-0000-0000-000000000000"


def listing(a: str, b: str, c: str) -> str:
    return (f'[{{"dev":"namespace0.0","uuid":"{a}"}},{{"dev":"namespace0.1","uuid":"{b}"}},'
            f'{{"dev":"pfn0.0","uuid":"{c}","namespace":"{a}"}}]\n')


# ---------------------------------------------------------------- normalisation

def test_consistent_uuid_renaming_matches():
    golden = listing(U1, U2, U1)
    assert rp.outputs_match(listing(V1, V2, V1), golden)
    assert rp.outputs_match(listing(V2, V1, V2), golden)   # any consistent renaming
    assert rp.normalise_uuids(golden) == listing("<uuid-1>", "<uuid-2>", "<uuid-1>")


def test_inconsistent_uuid_renaming_does_not_match():
    golden = listing(U1, U2, U1)
    assert not rp.outputs_match(listing(V1, V1, V1), golden)   # one uuid where there are two
    assert not rp.outputs_match(listing(V1, V2, V2), golden)   # reused for the wrong device
    assert not rp.outputs_match(listing(V1, V2, U2), golden)   # a third distinct one
    assert not rp.outputs_match(listing(U1, U2, U2), listing(U1, U2, U1))


def test_only_uuids_are_normalised():
    golden = listing(U1, U2, U1)
    assert not rp.outputs_match(listing(V1, V2, V1).replace("pfn0.0", "pfn0.1"), golden)
    # the nil uuid is not random, and the kernel prints uuids in lower case
    assert not rp.outputs_match(listing(NIL, V2, NIL), golden)
    assert rp.outputs_match(listing(NIL, V2, NIL), listing(NIL, U1, NIL))
    assert not rp.outputs_match(listing(V1.upper(), V2, V1.upper()), golden)
    assert not rp.outputs_match(listing(V1, V2, V1) + "\n", golden)


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_two_real_recordings_match_after_normalisation():
    """What differs between two real recordings of the same session (dmesg
    timestamps, ls dates, node MemFree/MemUsed) is all that normalisation
    takes out: every command's stdout then matches."""
    seqs = sorted(f[:3] for f in os.listdir(HMAT) if f.endswith(".out"))
    assert len(seqs) == 41
    assert sorted(f[:3] for f in os.listdir(HMAT_RERUN)) == RERUN_DIFFERS
    for seq in seqs:
        first = _read(os.path.join(HMAT, f"{seq}.out"))
        rerun = os.path.join(HMAT_RERUN, f"{seq}.out")
        second = _read(rerun) if os.path.exists(rerun) else first
        assert (first != second) == (seq in RERUN_DIFFERS), seq
        assert rp.normalise(first) == rp.normalise(second), seq
        assert rp.outputs_match(second, first), seq


def test_normalised_forms():
    dmesg = _read(os.path.join(HMAT, "041.out")).splitlines()
    assert dmesg[0] == "[   41.913070] Built 2 zonelists, mobility grouping on.  Total pages: 721896"
    assert rp.normalise(dmesg[0]) == "[<time>] Built 2 zonelists, mobility grouping on.  Total pages: 721896"
    ls = _read(os.path.join(HMAT, "040.out")).splitlines()
    assert rp.normalise(ls[9]) == "drwxr-xr-x    5 root     root             0 <date> node2"
    # coreutils' format, a year instead of a time, a device's major/minor, a symlink
    assert rp.normalise("drwxr-xr-x 2 root root 0 Jan  1  1970 hmem.0\n") == \
        "drwxr-xr-x 2 root root 0 <date> hmem.0\n"
    assert rp.normalise("crw-------    1 root     root      246,   0 Nov  2 00:07 ndctl0") == \
        "crw-------    1 root     root      246,   0 <date> ndctl0"
    assert rp.normalise("lrwxrwxrwx 1 root root 0 Dec 31 23:59 module -> ../../module/dax_hmem") == \
        "lrwxrwxrwx 1 root root 0 <date> module -> ../../module/dax_hmem"
    meminfo = _read(os.path.join(HMAT, "007.out")).splitlines()
    assert rp.normalise("\n".join(meminfo[:3])) == \
        "Node 0 MemTotal:        2017400 kB\nNode 0 MemFree: <kB>\nNode 0 MemUsed: <kB>"
    assert rp.normalise("MemTotal:        2732256 kB\nMemFree:         2662108 kB\n") == \
        "MemTotal:        2732256 kB\nMemFree: <kB>\n"


def test_memtotal_and_the_rest_are_not_normalised():
    """A MemTotal (or any other counter) that differs is a real difference."""
    golden = _read(os.path.join(HMAT, "007.out"))
    assert "Node 0 MemTotal:        2017400 kB\n" in golden
    assert not rp.outputs_match(golden.replace("MemTotal:        2017400", "MemTotal:        2017404"), golden)
    assert not rp.outputs_match(golden.replace("Node 1 MemFree", "Node 2 MemFree"), golden)
    proc = "MemTotal:        2732256 kB\nMemFree:         2662108 kB\nMemAvailable:    2587820 kB\n"
    assert rp.outputs_match(proc.replace("2662108", "2662000"), proc)
    assert not rp.outputs_match(proc.replace("2732256", "2732000"), proc)
    assert not rp.outputs_match(proc.replace("2587820", "2587000"), proc)
    assert not rp.outputs_match(proc.replace("MemFree:         2662108 kB", "MemFree:         2662108 MB"), proc)


def test_only_the_line_formats_are_normalised():
    # a timestamp that does not start the line, a date outside an ls entry,
    # MemFree in prose: left as they are
    for text in ("x [   12.711718] y\n", "modified Nov 22 00:07 by ndctl\n",
                 "total 4096 Nov 22 00:07 x\n", "free: MemFree:   123 kB\n", "Node 0 MemFree: 123 kB (ish)\n",
                 "[12.7117] short\n", "-rw-r--r-- 1 root root 0 Nov 32 00:07 f\n",
                 "-rw-r--r-- 1 root root 0 Nov 22 24:07 f\n"):
        assert rp.normalise(text) == text, text
    # but the ls entry's own mode, link count, size and name are still compared
    entry = "-r--r--r--    1 root     root          4096 Nov 22 00:07 has_cpu\n"
    assert rp.outputs_match(entry.replace("Nov 22 00:07", "Jan  1  1970"), entry)
    for old, new in (("-r--r--r--", "-rw-r--r--"), ("    1 root", "    2 root"), (" 4096 ", "    2 "),
                     ("has_cpu", "has_mem")):
        assert not rp.outputs_match(entry.replace(old, new), entry), new


# ---------------------------------------------------------------- userland

@needs_busybox
def test_busybox_userland(tmp_path):
    """The applets of the oracle's initramfs: all of busybox's but the
    module tools and find (kmod and GNU find there)."""
    bindir = str(tmp_path / "bb")
    assert rp.busybox_userland(bindir)
    names = set(os.listdir(bindir))
    assert {"sh", "ls", "cat", "grep", "head", "tr", "readlink", "dmesg"} <= names
    assert not names & rp.NOT_BUSYBOX
    assert all(os.readlink(os.path.join(bindir, n)) == rp.BUSYBOX for n in names)


def test_no_static_busybox(tmp_path):
    assert rp.static_busybox(os.path.realpath(sys.executable)) is None   # dynamically linked
    assert rp.static_busybox(str(tmp_path / "none")) is None
    assert not rp.busybox_userland(str(tmp_path / "bb"), str(tmp_path / "none"))


@pytest.mark.skipif(not seccomp.supported(), reason="the filter is x86-64 only")
def test_replayed_commands_cannot_load_or_unload_modules():
    """The guard every replayed command runs under: delete_module of a
    module that does not exist fails with EPERM, not ENOENT."""
    probe = ("import ctypes, sys; libc = ctypes.CDLL(None, use_errno=True); "
             "r = libc.syscall(176, b'fakesys_no_such_module', 0o4000); "
             "print(r, ctypes.get_errno())")
    guarded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                             preexec_fn=seccomp.deny_module_loading, check=True)
    assert guarded.stdout.split() == ["-1", str(errno.EPERM)]
    if os.getuid() == 0:
        free = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
        assert free.stdout.split() != guarded.stdout.split()


def test_out_mapping():
    cmd = "ndctl read-labels nmem0 -o /out/labels/a.bin && cat '/out/x' >/out/y; echo /outside /x/out/z"
    assert rp.map_out(cmd, "/tmp/o") == (
        "ndctl read-labels nmem0 -o /tmp/o/labels/a.bin && cat '/tmp/o/x' >/tmp/o/y; echo /outside /x/out/z")
    assert rp.map_out("cd /out; pwd", "/tmp/o") == "cd /tmp/o; pwd"
    assert [m.group(1) for m in rp.OUT_PATH_RE.finditer(cmd)] == ["/labels/a.bin", "/x", "/y"]
    # a recorded /sbin/modprobe becomes the sandbox's, never the host's (nor busybox's applet)
    assert rp.map_out("/sbin/modprobe -r nfit_test; x=1 /usr/sbin/modprobe a", "/tmp/o") == \
        "modprobe -r nfit_test; x=1 modprobe a"
    assert rp.map_out("(/sbin/modprobe a)", "/tmp/o", "'/f s/modprobe'") == "('/f s/modprobe' a)"
    assert rp.map_out("/sbin/modinfo -n m", "/tmp/o", "/m") == "/sbin/modinfo -n m"


def test_load_session(tmp_path):
    g = make_session(tmp_path / "nfit", ["003", "004"], dump="boot")
    steps = rp.load_session(g)
    assert [(s.seq, s.kind, s.command, s.rc) for s in steps] == [
        ("003", "cmd", "ndctl list", 0), ("004", "cmd", "ndctl list -BDRN", 0), ("004", "dump", "boot", None)]
    assert steps[0].out == open(os.path.join(CMDS, "003.out")).read()


# ---------------------------------------------------------------- end to end

def make_session(d, seqs, extra=(), dump=None) -> str:
    """A golden-format directory: commands.tsv and cmds/NNN.* from the
    real recordings ``seqs``, plus ``extra`` (seq, rc, cmd, out) steps."""
    os.makedirs(os.path.join(d, "cmds"))
    lines = []
    for seq in seqs:
        for ext in ("cmd", "out", "err", "rc"):
            shutil.copy(os.path.join(CMDS, f"{seq}.{ext}"), os.path.join(d, "cmds", f"{seq}.{ext}"))
        rc = open(os.path.join(CMDS, f"{seq}.rc")).read().strip()
        lines.append(f"{seq}\t{rc}\t{open(os.path.join(CMDS, f'{seq}.cmd')).read().rstrip()}")
    for seq, rc, cmd, out in extra:
        for ext, text in (("cmd", cmd + "\n"), ("out", out), ("err", ""), ("rc", f"{rc}\n")):
            with open(os.path.join(d, "cmds", f"{seq}.{ext}"), "w") as f:
                f.write(text)
        lines.append(f"{seq}\t{rc}\t{cmd}")
    if dump:
        os.makedirs(os.path.join(d, "sysfs"))
        shutil.copy(BOOT_DUMP, os.path.join(d, "sysfs", f"{dump}.txt"))
        lines.append(f"{lines[-1][:3]}\t-\tDUMP {dump}")
    with open(os.path.join(d, "commands.tsv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return str(d)


SEQS = [f"{n:03d}" for n in range(3, 15)]


def test_replay_listing_session(tmp_path):
    """Commands 003-014 of the golden nfit session match today; the
    directory's name ("nfit") selects devices/qemu-nvdimm.toml.  A command
    that writes below /out runs in the replay's stand-in for /out."""
    extra = [("015", 0, "mkdir -p /out/a && echo hi >/out/a/f && cat /out/a/f && pwd", "hi\n/out\n")]
    g = make_session(tmp_path / "nfit", SEQS, extra)
    buf = io.StringIO()
    rc = rp.replay(g, verbose=True, out=buf)
    text = buf.getvalue()
    assert rc == 0, text
    lines = text.splitlines()
    assert lines[0] == "003  match  rc=0/0  ndctl list"
    assert "014  match  rc=0/0  daxctl list -RDiu" in lines
    assert lines[-2] == "stderr match: 13/13 (100%)"
    assert lines[-1] == "match: 13/13 (100%)"


def test_replay_reports_mismatch(tmp_path):
    """A wrong recorded stdout or exit status is a MISMATCH with a diff; the
    dump at a DUMP line is reported on its own and not scored."""
    g = make_session(tmp_path / "nfit", ["003"],
                     [("004", 0, "echo 1", "2\n"), ("005", 3, "echo x >&2; exit 3", "")], dump="boot")
    buf = io.StringIO()
    rc = rp.replay(g, verbose=True, out=buf)
    text = buf.getvalue()
    assert rc == 1, text
    lines = text.splitlines()
    assert lines[0] == "003  match  rc=0/0  ndctl list"
    assert "004  MISMATCH  rc=0/0  echo 1" in lines
    assert "-2\n+1\n" in text and "--- golden/004.out" in text
    assert "005  match  rc=3/3  echo x >&2; exit 3" in lines
    assert any(l.startswith("DUMP  ") and "  boot  " in l for l in lines)
    assert lines[-2] == "stderr match: 2/3 (67%); differs: 005"
    assert lines[-1] == "match: 2/3 (67%)"


@needs_busybox
def test_replay_runs_the_recordings_busybox(tmp_path):
    """With busybox, ``ls -l`` prints in its format (as the oracle's did),
    and a recorded /sbin/modprobe still goes to the fake."""
    extra = [("015", 0, "touch /out/f && chmod 644 /out/f && ls -ln /out/f",
              "-rw-r--r--    1 0        0                0 Nov 22 00:07 /out/f\n"),
             ("016", 0, "/sbin/modprobe -r nfit_test; echo $?", "0\n")]
    g = make_session(tmp_path / "nfit", ["003"], extra)
    buf = io.StringIO()
    rc = rp.replay(g, verbose=True, out=buf)
    assert rc == 0, buf.getvalue()


def test_replay_without_busybox(tmp_path, monkeypatch, capsys):
    """No static busybox: the host's sh and tools, and one note saying so."""
    monkeypatch.setattr(rp, "BUSYBOX", str(tmp_path / "no-busybox"))
    g = make_session(tmp_path / "nfit", ["003"], [("015", 0, "echo $PATH", "x\n")])
    buf = io.StringIO()
    assert rp.replay(g, verbose=True, out=buf) == 1
    assert "003  match  rc=0/0  ndctl list" in buf.getvalue().splitlines()
    assert "fakesys-replay-" not in buf.getvalue()     # no applet directory in PATH
    notes = [l for l in capsys.readouterr().err.splitlines() if "busybox" in l]
    assert len(notes) == 1 and "note: no static busybox" in notes[0], notes


def test_replay_needs_topology(tmp_path, capsys):
    g = make_session(tmp_path / "unknown-machine", ["003"])
    assert rp.replay(g, out=io.StringIO()) == 2
    assert "--topology" in capsys.readouterr().err
