"""Fuzzed sysfs writes on the model, in process (hypothesis, derandomized).

Each example boots the default topology (a state directory in a temporary
directory) and runs a sequence of steps: writes of random and boundary
values to every writable attribute of every device type, interleaved with
ndctl-like create/destroy, region and DIMM disable/enable, daxctl-like
create/destroy and reboots (harness/fuzz.py).  After every write
the invariants hold, a rejected write returned an errno and changed
nothing, and no show crashes.  While the steps run, an audit hook fails
the test if any file outside the state directory is opened for writing,
created, renamed, removed or truncated, whatever name or value came in.

The long run is ``scripts/fuzz``; FAKESYS_FUZZ_EXAMPLES / _STEPS make this
one longer.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from harness.fuzz import Fuzz, HypothesisChooser
from fakesys.platform.topology import default_path

EXAMPLES = int(os.environ.get("FAKESYS_FUZZ_EXAMPLES", "5"))
STEPS = int(os.environ.get("FAKESYS_FUZZ_STEPS", "30"))
DEVICES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "devices")

# -- writes outside the state directory --------------------------------------------

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_PATH_EVENTS = {"os.mkdir", "os.rename", "os.replace", "os.remove", "os.unlink", "os.rmdir",
                "os.symlink", "os.link", "os.truncate", "os.chmod", "os.chown", "os.utime",
                "shutil.copyfile", "shutil.move", "shutil.rmtree", "os.mkfifo", "os.mknod"}
_GUARD: dict = {"root": None, "hits": []}


def _audit(event: str, args: tuple) -> None:
    root = _GUARD["root"]
    if root is None:
        return
    if event == "open":
        path, mode, flags = (tuple(args) + (None, None, None))[:3]
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
            (isinstance(flags, int) and flags & _WRITE_FLAGS)
        if not writing:
            return
    elif event in _PATH_EVENTS:
        path = args[0]
    else:
        return
    if isinstance(path, int) or path is None:
        return  # an fd already opened (and checked) before
    real = os.path.realpath(os.fsdecode(path))
    if real == root or real.startswith(root + os.sep):
        return
    if "__pycache__" in real or ".pyc" in real or f"{os.sep}.hypothesis{os.sep}" in real + os.sep:
        return  # caches of the test tooling (bytecode, hypothesis' constants), first run only
    _GUARD["hits"].append((event, real))


sys.addaudithook(_audit)


class guard_writes:
    """Collect writes outside ``root`` while active."""

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)

    def __enter__(self):
        _GUARD["root"], _GUARD["hits"] = self.root, []
        return _GUARD["hits"]

    def __exit__(self, *exc):
        _GUARD["root"] = None


# -- the state machine ------------------------------------------------------------------


class SysfsFuzz(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="fakesys-fuzz-")
        self.fz = Fuzz(default_path(), os.path.join(self.tmp, "state"), strict=True)

    @rule(data=st.data())
    def step(self, data) -> None:
        with guard_writes(self.tmp) as hits:
            self.fz.step(HypothesisChooser(data))
        assert not hits, f"written outside the state directory: {hits}"

    def teardown(self) -> None:
        SysfsFuzz.writes += self.fz.stats.writes
        shutil.rmtree(self.tmp, ignore_errors=True)

    writes = 0


def test_fuzzed_writes_keep_invariants_and_refusals_change_nothing():
    SysfsFuzz.writes = 0
    run_state_machine_as_test(SysfsFuzz, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, derandomize=True, database=None,
        deadline=None, print_blob=False,
        suppress_health_check=list(HealthCheck)))
    assert SysfsFuzz.writes >= EXAMPLES * STEPS // 2


def test_the_audit_hook_sees_escapes(tmp_path):
    """The guard itself: a write outside its root is caught, inside is not."""
    with guard_writes(str(tmp_path / "inside")) as hits:
        os.makedirs(tmp_path / "inside", exist_ok=True)
        (tmp_path / "inside" / "ok").write_bytes(b"x")
        (tmp_path / "outside").write_bytes(b"x")
    assert [h[1] for h in hits] == [str(tmp_path / "outside")]


@pytest.mark.parametrize("name", ["../escape", "a/b", "/etc/x", "nul\0name"])
def test_topology_names_cannot_leave_the_state_directory(tmp_path, name):
    """A DIMM name becomes a media file name: one that would lead outside
    the state directory is refused and nothing is created anywhere."""
    quoted = json.dumps(name)  # a TOML basic string
    text = open(os.path.join(DEVICES, "default.toml")).read().replace(
        'name = "nvdimm3"', f"name = {quoted}").replace('"nvdimm3"]', f"{quoted}]")
    topo = tmp_path / "evil.toml"
    topo.write_text(text)
    state = tmp_path / "deep" / "state"
    from fakesys.platform.machine import Machine
    from fakesys.platform.topology import load
    topology = load(str(topo))
    assert name in {d.name for bus in topology.buses for d in bus.dimms}
    before = sorted(p for p in tmp_path.rglob("*"))
    with guard_writes(str(tmp_path / "deep")) as hits:
        with pytest.raises(ValueError):
            Machine(topology, str(state))
    assert not hits
    created = [p for p in tmp_path.rglob("*") if p not in before and not str(p).startswith(str(state))]
    assert created == [tmp_path / "deep"]  # the state directory's parent, made for it


def test_a_symlink_in_the_state_directory_is_not_followed(tmp_path):
    """Media files are opened O_NOFOLLOW: a planted link cannot redirect them."""
    from fakesys.platform.machine import Machine
    from fakesys.platform.topology import load
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    state = tmp_path / "state"
    state.mkdir()
    (state / "nvdimm0.labels").symlink_to(victim)
    with pytest.raises(OSError):
        Machine(load(os.path.join(DEVICES, "default.toml")), str(state))
    assert victim.read_bytes() == b"precious"
