#!/usr/bin/env python3
"""/dev/daxR.N through mmap: bandwidth against a plain file (root needed).

Brings up ``devices/qemu-hmem.toml`` (one 512 MiB device, dax0.0) with its
state directory in DIR, then inside ``fakesys run`` opens /dev/dax0.0
O_RDWR (the trapped open that hands out the device's backing file), mmaps
it MAP_SHARED and times a sequential write pass (fill, then msync) and a
sequential read pass (sum) with numpy; then the same on a plain file of
the same size in DIR (the same filesystem).  Prints GiB/s of both and
their ratio (target >= 0.9).  The two are measured alternately, TRIALS
times each (every trial a new process: open, mmap, one warm-up round,
three timed rounds), and the medians compared.

Usage: .venv/bin/python bench/dax_mmap.py [TRIALS] [DIR]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKESYS = [sys.executable, "-m", "fakesys.cli"]
TOPOLOGY = os.path.join(ROOT, "devices", "qemu-hmem.toml")
ROUNDS = 3  # timed rounds per process, after one warm-up round

# Runs as the application: open O_RDWR, mmap, time write+msync and read passes.
INNER = r"""
import mmap, os, statistics, sys, time
import numpy as np
path, rounds = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_RDWR)
size = os.fstat(fd).st_size
m = mmap.mmap(fd, size, mmap.MAP_SHARED)
a = np.frombuffer(m, dtype=np.uint64)
w, r = [], []
for i in range(rounds + 1):
    t = time.perf_counter()
    a.fill(i + 1)
    m.flush()
    t1 = time.perf_counter()
    s = int(a.sum(dtype=np.uint64))
    t2 = time.perf_counter()
    assert s == (i + 1) * a.size % 2**64
    if i:
        w.append(t1 - t), r.append(t2 - t1)
print(size, statistics.median(w), statistics.median(r))
"""


def run_inner(argv_prefix: list[str], path: str, rounds: int) -> tuple[int, float, float]:
    out = subprocess.run(argv_prefix + [sys.executable, "-c", INNER, path, str(rounds)],
                         check=True, capture_output=True, text=True, cwd=ROOT).stdout.split()
    return int(out[0]), float(out[1]), float(out[2])


def main() -> int:
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    base = sys.argv[2] if len(sys.argv) > 2 else None
    work = tempfile.mkdtemp(prefix="fakesys-bench-dax-", dir=base)
    state = os.path.join(work, "state")
    plain = os.path.join(work, "plain.media")
    name = f"bench-dax-{os.getpid()}"
    dax_w, dax_r, plain_w, plain_r = [], [], [], []
    try:
        subprocess.run(FAKESYS + ["up", TOPOLOGY, "--name", name, "--state", state], check=True,
                       cwd=ROOT, stdout=subprocess.DEVNULL)
        try:
            for _ in range(trials):   # alternate, so that drift hits both alike
                size, w, r = run_inner(FAKESYS + ["run", "--name", name, "--"], "/dev/dax0.0", ROUNDS)
                dax_w.append(w), dax_r.append(r)
                if not os.path.exists(plain):
                    with open(plain, "wb") as f:
                        f.truncate(size)
                _, w, r = run_inner([], plain, ROUNDS)
                plain_w.append(w), plain_r.append(r)
        finally:
            subprocess.run(FAKESYS + ["down", "--name", name], cwd=ROOT)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    dw, dr, pw, pr = (statistics.median(x) for x in (dax_w, dax_r, plain_w, plain_r))
    gib = size / (1 << 30)
    where = base or tempfile.gettempdir()
    fs = subprocess.run(["stat", "-f", "-c", "%T", where], capture_output=True, text=True).stdout.strip()
    print(f"{size >> 20} MiB on {fs} ({where}), median of {trials} alternating trials x {ROUNDS} rounds:")
    print(f"  write+msync: /dev/dax0.0 {gib / dw:.2f} GiB/s, plain file {gib / pw:.2f} GiB/s, ratio {pw / dw:.2f}")
    print(f"  read:        /dev/dax0.0 {gib / dr:.2f} GiB/s, plain file {gib / pr:.2f} GiB/s, ratio {pr / dr:.2f}")
    print(f"  write+read ratio {(pw + pr) / (dw + dr):.2f} (target >= 0.9)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
