"""The product ships what it runs on: a wheel built from this tree works on its own.

Issue 15: ``modprobe nfit_test`` and ``fakesys replay`` used to open
``../devices/*.toml``, which exists only in a checkout.  This test builds a
wheel from a copy of the files a build needs, installs it into a fresh
venv and, from a directory outside the checkout and with no PYTHONPATH
(harness/ puts the checkout there for its subprocesses), runs ``fakesys
up``, ``modprobe nfit_test`` inside ``fakesys run`` (the shim in
fakesys/data/bin asks the daemon, which loads the shipped nfit_test
topology), ``fakesys down`` and the golden e820 replay (which picks the
shipped e820 topology by the session's name).

pip builds in isolation and installs the dependencies from the configured
indexes (this machine has local ones); when none answers, the test skips.
About 20 s, most of it building and installing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

from conftest import ROOT, needs_ndctl, needs_root

HERE = os.path.dirname(os.path.abspath(__file__))
E820 = os.path.join(HERE, "data", "golden", "e820")
# what setup.py and pyproject.toml build from
BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md", "fakesys")
OFFLINE = ("No matching distribution", "Could not find a version", "Network is unreachable")


def _copy_sources(dest: str) -> str:
    """The build inputs without compiled leftovers, so the wheel is built, not copied."""
    src = os.path.join(dest, "src")
    os.makedirs(src)
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info")
    for name in BUILD_INPUTS:
        path = os.path.join(ROOT, name)
        if os.path.isdir(path):
            shutil.copytree(path, os.path.join(src, name), ignore=ignore)
        else:
            shutil.copy2(path, src)
    return src


def _pip(venv: str, *args: str, cwd: str, env: dict) -> None:
    proc = subprocess.run([os.path.join(venv, "bin", "python"), "-m", "pip", *args],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    if proc.returncode != 0:
        if any(s in proc.stderr for s in OFFLINE):
            pytest.skip(f"pip could not reach an index: {proc.stderr.strip().splitlines()[-1]}")
        raise AssertionError(f"pip {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with the wheel built from this tree; (its fakesys, a clean env, a cwd)."""
    tmp = str(tmp_path_factory.mktemp("wheel"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    src = _copy_sources(tmp)
    venv = os.path.join(tmp, "venv")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, env=env, cwd=tmp)
    dist = os.path.join(tmp, "dist")
    _pip(venv, "wheel", "-q", "--no-deps", "-w", dist, src, cwd=tmp, env=env)
    wheels = os.listdir(dist)
    assert len(wheels) == 1 and wheels[0].startswith("fakesys-"), wheels
    shutil.rmtree(src)                    # nothing may be read from the copy either
    _pip(venv, "install", "-q", os.path.join(dist, wheels[0]), cwd=tmp, env=env)
    elsewhere = os.path.join(tmp, "elsewhere")
    os.makedirs(elsewhere)
    return os.path.join(venv, "bin", "fakesys"), env, elsewhere


def _fakesys(installed, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    exe, env, cwd = installed
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def test_the_wheel_ships_no_harness_and_runs_from_its_own_files(installed):
    exe, env, cwd = installed
    where = subprocess.run([os.path.join(os.path.dirname(exe), "python"), "-c",
                            "import fakesys, importlib.util as u; print(fakesys.__file__);"
                            " print(u.find_spec('harness'))"],
                           capture_output=True, text=True, cwd=cwd, env=env, check=True).stdout.split("\n")
    assert where[0].startswith(os.path.dirname(os.path.dirname(exe))), where   # the venv's copy
    assert where[1] == "None"


@needs_root
def test_up_modprobe_nfit_test_down(installed):
    name = f"wheel-{uuid.uuid4().hex[:8]}"
    up = _fakesys(installed, "up", "--name", name)
    assert up.returncode == 0, up.stderr
    try:
        ran = _fakesys(installed, "run", "--name", name, "--", "sh", "-c",
                       "modprobe nfit_test && ls /sys/bus/nd/devices")
        assert ran.returncode == 0, ran.stderr
        buses = [d for d in ran.stdout.split() if d.startswith("ndbus")]
        assert len(buses) > 1, ran.stdout       # the default's bus and nfit_test's
    finally:
        down = _fakesys(installed, "down", "--name", name)
    assert down.returncode == 0, down.stderr


@needs_root
@needs_ndctl
def test_replay_of_a_golden_session(installed, tmp_path):
    golden = shutil.copytree(E820, tmp_path / "e820")   # the name picks the shipped e820 topology
    proc = _fakesys(installed, "replay", str(golden), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.stdout.splitlines()[-1] == "match: 33/33 (100%)"


def test_one_copy_of_each_topology_in_the_package(monkeypatch, tmp_path):
    """devices/ is the package's topologies/ (a symlink in git), the default
    is one of them, and the CLI takes a shipped topology by its name."""
    import fakesys
    devices = os.path.join(ROOT, "devices")
    assert os.path.islink(devices) and os.path.samefile(devices, fakesys.TOPOLOGY_DIR)
    assert os.path.dirname(fakesys.DEFAULT_TOPOLOGY) == fakesys.TOPOLOGY_DIR
    assert not os.path.exists(os.path.join(ROOT, "fakesys", "data", "default.toml"))
    assert fakesys.topology_path(None) == fakesys.DEFAULT_TOPOLOGY
    for name in ("nfit_test", "nfit_test.toml"):
        assert fakesys.topology_path(name) == os.path.join(fakesys.TOPOLOGY_DIR, "nfit_test.toml")
    monkeypatch.chdir(ROOT)
    assert fakesys.topology_path("devices/e820.toml") == os.path.join(devices, "e820.toml")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nfit_test").write_text("")            # a file there wins over the shipped name
    assert fakesys.topology_path("nfit_test") == str(tmp_path / "nfit_test")
