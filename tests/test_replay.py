"""``fakesys replay``: output normalisation, and one short session end to end.

The end-to-end session uses the real kernel's recordings of the golden
``nfit`` machine's commands 003-014 (``ndctl list`` / ``daxctl list``
variants at boot), copied to ``tests/data/golden/nfit/cmds/``.
"""

from __future__ import annotations

import io
import os
import shutil

from fakesys import replay as rp

HERE = os.path.dirname(os.path.abspath(__file__))
CMDS = os.path.join(HERE, "data", "golden", "nfit", "cmds")
BOOT_DUMP = os.path.join(HERE, "data", "golden", "nfit", "sysfs", "boot.txt")

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


def test_out_mapping():
    cmd = "ndctl read-labels nmem0 -o /out/labels/a.bin && cat '/out/x' >/out/y; echo /outside /x/out/z"
    assert rp.map_out(cmd, "/tmp/o") == (
        "ndctl read-labels nmem0 -o /tmp/o/labels/a.bin && cat '/tmp/o/x' >/tmp/o/y; echo /outside /x/out/z")
    assert rp.map_out("cd /out; pwd", "/tmp/o") == "cd /tmp/o; pwd"
    assert [m.group(1) for m in rp.OUT_PATH_RE.finditer(cmd)] == ["/labels/a.bin", "/x", "/y"]


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


def test_replay_needs_topology(tmp_path, capsys):
    g = make_session(tmp_path / "unknown-machine", ["003"])
    assert rp.replay(g, out=io.StringIO()) == 2
    assert "--topology" in capsys.readouterr().err
