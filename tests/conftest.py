"""Fixtures: a live fake (daemon + FUSE mount) and a runner for real tools.

``fake_factory(topology, state=None)`` brings a fake up under a unique name
and tears it down after the test; ``Fake.run("ndctl list -N")`` runs a
shell command inside ``fakesys run`` and returns the CompletedProcess;
``Fake.json(...)`` parses a tool's JSON output; ``Fake.sys(path)`` reads an
attribute straight from the mount (no namespace needed for reads).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICES = os.path.join(ROOT, "devices")
FAKESYS = [sys.executable, "-m", "fakesys.cli"]

needs_root = pytest.mark.skipif(os.getuid() != 0, reason="needs root for the mount namespace")
needs_ndctl = pytest.mark.skipif(shutil.which("ndctl") is None, reason="ndctl is not installed")
needs_numactl = pytest.mark.skipif(shutil.which("numactl") is None,
                                   reason="numactl is not installed (scripts/bootstrap installs it)")


class Fake:
    def __init__(self, topology: str, state: str | None, up_args: tuple[str, ...] = ()) -> None:
        self.topology = topology
        self.state = state
        self.up_args = list(up_args)   # more `fakesys up` options (--harness MODULE)
        self.name = f"test-{uuid.uuid4().hex[:10]}"
        self.mnt = ""

    def up(self) -> "Fake":
        cmd = FAKESYS + ["up", self.topology, "--name", self.name] + self.up_args
        if self.state:
            cmd += ["--state", self.state]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
        self.mnt = out.stdout.strip()
        return self

    def down(self) -> None:
        subprocess.run(FAKESYS + ["down", "--name", self.name], capture_output=True, cwd=ROOT)

    def run(self, command: str, check: bool = False) -> subprocess.CompletedProcess:
        proc = subprocess.run(FAKESYS + ["run", "--name", self.name, "--", "sh", "-c", command],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"{command!r} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def json(self, command: str):
        out = self.run(command, check=True).stdout
        return json.loads(out) if out.strip() else None

    def sys(self, path: str) -> str:
        with open(os.path.join(self.mnt, "sys", path.lstrip("/").removeprefix("sys/"))) as f:
            return f.read()

    def write(self, path: str, value: str) -> None:
        """A raw sysfs write through the mount; raises OSError with the errno."""
        fd = os.open(os.path.join(self.mnt, "sys", path.lstrip("/").removeprefix("sys/")), os.O_WRONLY)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)

    def refused(self, path: str, value: str) -> int:
        """The errno of a sysfs write that must fail."""
        with pytest.raises(OSError) as e:
            self.write(path, value)
        return e.value.errno


@pytest.fixture
def fake_factory(tmp_path):
    fakes: list[Fake] = []

    def make(topology: str = "default.toml", state: str | None = None, up_args: tuple[str, ...] = ()) -> Fake:
        path = topology if os.path.isabs(topology) else os.path.join(DEVICES, topology)
        fake = Fake(path, state if state is not None else str(tmp_path / f"state{len(fakes)}"), up_args)
        fakes.append(fake)
        return fake.up()

    yield make
    for fake in fakes:
        fake.down()


@pytest.fixture
def fake(fake_factory):
    """The built-in default topology, fresh state."""
    return fake_factory("default.toml")


class MemIO:
    """Sparse in-memory namespace media (4 KiB pages, zero when untouched)."""

    def __init__(self, size):
        self.size = size
        self.pages = {}
        self.writes = 0

    def read(self, off, n):
        assert 0 <= off and off + n <= self.size
        out = bytearray()
        while n:
            pg, po = divmod(off, 4096)
            k = min(n, 4096 - po)
            out += self.pages.get(pg, bytes(4096))[po:po + k]
            off += k
            n -= k
        return bytes(out)

    def write(self, off, data):
        assert 0 <= off and off + len(data) <= self.size
        self.writes += 1
        data = memoryview(bytes(data))
        while data:
            pg, po = divmod(off, 4096)
            k = min(len(data), 4096 - po)
            page = self.pages.setdefault(pg, bytearray(4096))
            page[po:po + k] = data[:k]
            off += k
            data = data[k:]
