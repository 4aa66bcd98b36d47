"""Fuzzing a live fake through its FUSE mount, with the real tools interleaved.

The in-process fuzzer (fuzz.py) checks the model; this one checks the
whole path a program takes: ``open``/``write`` on the mount (permission
checks, the one-page limit, the errno a store raises reaching the
writer), the daemon's fault containment, and the kernel page cache that
keeps attribute contents between opens.  Between raw writes it runs the
real ``ndctl``/``daxctl`` inside ``fakesys run``.  After every step it asks
the daemon (control command ``check``) for the model's invariants, its
contained faults and a digest of everything sysfs shows; a rejected write
must leave the digest unchanged (see ``kernel_side_effect`` for the
kernel's own exceptions).  ``verify_cache`` reads every attribute through
the mount and compares it with what the model shows.
"""

from __future__ import annotations

import collections
import errno
import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass, field

from fakesys import runtime
from harness.fuzz import BOOLS, BOUNDARY, SIZES, RandomChooser, kernel_side_effect

MiB = 1 << 20


@dataclass
class FuseStats:
    writes: int = 0
    accepted: int = 0
    rejected: collections.Counter = field(default_factory=collections.Counter)
    refused_open: collections.Counter = field(default_factory=collections.Counter)
    commands: collections.Counter = field(default_factory=collections.Counter)  # "tool: rc"
    cache_checks: int = 0
    side_effects: int = 0


class FuseFuzz:
    def __init__(self, name: str, seed: int, fakesys: list[str] | None = None,
                 cwd: str | None = None) -> None:
        self.name = name
        self.mnt = os.path.join(runtime.rundir(name), "mnt")
        self.ch = RandomChooser(seed)
        self.fakesys = fakesys or [sys.executable, "-m", "fakesys.cli"]
        self.cwd = cwd
        self.stats = FuseStats()
        self.violations: list[str] = []
        self.history: collections.deque = collections.deque(maxlen=30)
        self._paths: list[str] = []
        self._snap = self.snapshot()
        self.check("start")

    # -- the daemon's view --------------------------------------------------------------

    def _control(self, cmd: str):
        return json.loads(runtime.control(self.name, cmd, timeout=60))

    def snapshot(self) -> dict:
        return self._control("snapshot")

    def check(self, where: str) -> dict:
        reply = self._control("check")
        if reply["violations"]:
            self._violate(f"after {where}: invariants broken: {reply['violations']}")
        if reply["faults"]:
            self._violate(f"after {where}: the daemon contained {reply['faults']} faults (see its log)")
        return reply

    def _violate(self, text: str) -> None:
        steps = "\n  ".join(self.history)
        self.violations.append(f"{text}\n  last steps:\n  {steps}")
        raise AssertionError(self.violations[-1])

    # -- the mount -------------------------------------------------------------------------

    def writable(self, refresh: bool = False) -> list[str]:
        """Attributes with a write bit under sys/ (relative paths), no links followed."""
        if self._paths and not refresh:
            return self._paths
        out = []
        stack = [os.path.join(self.mnt, "sys")]
        while stack:
            d = stack.pop()
            try:
                entries = list(os.scandir(d))
            except OSError:
                continue
            for e in entries:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    stack.append(e.path)
                elif stat.S_ISREG(st.st_mode) and st.st_mode & 0o222:
                    out.append(os.path.relpath(e.path, self.mnt))
        self._paths = sorted(out)
        return self._paths

    def names(self) -> list[str]:
        out = set()
        bus = os.path.join(self.mnt, "sys/bus")
        for b in os.listdir(bus):
            for sub in ("devices", "drivers"):
                try:
                    out.update(os.listdir(os.path.join(bus, b, sub)))
                except OSError:
                    pass
        return sorted(out)

    def value(self, path: str) -> bytes:
        ch = self.ch
        name = path.rsplit("/", 1)[-1]
        kind = ch.randint(0, 9)
        if kind <= 4:
            names = self.names()
            if name in ("bind", "unbind", "drivers_probe", "namespace", "delete", "new_id", "remove_id"):
                return (ch.choice(names) + ch.choice(["", "\n"])).encode()
            if name == "size":
                return str(ch.choice(SIZES)).encode() + ch.choice([b"", b"\n"])
            if name == "uuid":
                return f"{ch.randint(0, 1 << 32):08x}-3b0c-4b93-9d3b-44e8b5d7a1a0\n".encode()
            if name in ("force_raw", "read_only", "memmap_on_memory", "drivers_autoprobe"):
                return ch.choice(BOOLS)
            if name == "align":
                return ch.choice([b"4096", b"2097152", b"0x1000000", b"0x3000", b"1073741824"])
            if name == "mode":
                return ch.choice([b"pmem", b"ram", b"none", b"x"])
        if kind <= 8:
            return ch.choice(BOUNDARY)
        return ch.rng.randbytes(ch.randint(1, 40))

    def write(self, path: str, data: bytes) -> int:
        self.history.append(f"write {path} <- {data[:60]!r}")
        full = os.path.join(self.mnt, path)
        try:
            fd = os.open(full, os.O_WRONLY)
        except OSError as e:
            self.stats.refused_open[errno.errorcode.get(e.errno, str(e.errno))] += 1
            return e.errno
        self.stats.writes += 1
        try:
            os.write(fd, data)
            err = 0
        except OSError as e:
            err = e.errno
        finally:
            os.close(fd)
        before = self._snap
        after = self.snapshot()
        self._snap = after
        if err:
            self.stats.rejected[errno.errorcode.get(err, str(err))] += 1
            if after != before:
                b = {k: ("file", 0, v.encode("latin-1") if isinstance(v, str) else v) for k, v in before.items()}
                a = {k: ("file", 0, v.encode("latin-1") if isinstance(v, str) else v) for k, v in after.items()}
                for k in set(after) - set(before):  # new attributes mean new directories
                    a[k.rsplit("/", 1)[0]] = ("dir", 0)
                if kernel_side_effect(path, data, err, b, a, []):
                    self.stats.side_effects += 1
                else:
                    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
                    self._violate(f"{path} <- {data[:60]!r} failed with {errno.errorcode.get(err, err)} "
                                  f"but changed {changed[:8]}")
        else:
            self.stats.accepted += 1
        self.check(f"{path} <- {data[:60]!r}")
        return err

    def verify_cache(self) -> None:
        """Every attribute read through the mount shows what the model shows."""
        self.stats.cache_checks += 1
        model = self.snapshot()
        for path, want in model.items():
            full = os.path.join(self.mnt, path)
            try:
                with open(full, "rb") as f:
                    got: object = f.read().decode("latin-1")
            except OSError as e:
                got = {"errno": e.errno}
            if got != want and not (isinstance(want, dict) and isinstance(got, dict)):
                self._violate(f"the mount shows {got!r} for {path}, the model {want!r}")

    # -- the tools ---------------------------------------------------------------------------

    def command(self) -> str:
        ch = self.ch
        regions = sorted(r for r in os.listdir(os.path.join(self.mnt, "sys/bus/nd/devices"))
                         if r.startswith("region"))
        namespaces = sorted(n for n in os.listdir(os.path.join(self.mnt, "sys/bus/nd/devices"))
                            if n.startswith("namespace"))
        r = ch.choice(regions) if regions else "region0"
        options = [
            f"ndctl create-namespace -r {r} -m {ch.choice(['raw', 'fsdax', 'devdax', 'sector'])} "
            f"-s {ch.choice(['16M', '32M', '64M'])}",
            f"ndctl create-namespace -r {r} -m fsdax -s 32M",
            f"ndctl destroy-namespace -f {ch.choice(namespaces) if namespaces else 'all'}",
            f"ndctl destroy-namespace -f all -r {r}",
            f"ndctl disable-region {r}",
            f"ndctl enable-region {r}",
            "ndctl list -BDRNu -vvv",
            "daxctl create-device -s 16M",
            "daxctl list -RDM",
        ]
        return ch.choice(options)

    def run(self, command: str) -> int:
        self.history.append(f"run {command}")
        proc = subprocess.run(self.fakesys + ["run", "--name", self.name, "--", "sh", "-c", command],
                              capture_output=True, text=True, timeout=120, cwd=self.cwd)
        tool = " ".join(command.split()[:2])
        self.stats.commands[f"{tool}: {'ok' if proc.returncode == 0 else 'failed'}"] += 1
        self._snap = self.snapshot()
        self._paths = []
        self.check(command)
        return proc.returncode

    def step(self) -> None:
        if self.ch.randint(0, 9) == 0:
            self.run(self.command())
        else:
            path = self.ch.choice(self.writable())
            if self.write(path, self.value(path)) == 0:
                self._paths = []  # a successful write may add or remove attributes
