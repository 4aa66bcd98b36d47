#!/usr/bin/env python3
"""RAMDAX at scale: create 509 namespaces one by one with the real ndctl on
one RAMDAX region, then list them, printing the per-namespace cost around
10, 100 and 509 namespaces (root needed for the namespace).

Two costs are reported for each window: the wall time of one
``ndctl create-namespace`` (which includes ndctl's own scan of every
namespace on the bus, so it grows with the count on a real kernel too) and
the daemon's CPU time per create (what fakesys itself spends, which must
stay flat).

Usage: .venv/bin/python bench/ramdax.py [COUNT]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKESYS = [sys.executable, "-m", "fakesys.cli"]
TOPOLOGY = ('kernel = "6.19"\n[[bus]]\ntype = "e820"\ndriver_override = "ramdax"\n'
            '[[bus.range]]\nstart = "4G"\nsize = "9G"\nramdax = true\n')
WINDOWS = (10, 100, 509)

# Runs inside the sandbox: create COUNT namespaces, print "i wall" per create,
# and the wall time of `ndctl list -N` at each window.
INNER = r"""
import subprocess, sys, time
count, windows = int(sys.argv[1]), {int(w) for w in sys.argv[2:]}
for i in range(1, count + 1):
    t = time.perf_counter()
    subprocess.run(["ndctl", "create-namespace", "-r", "region0", "-m", "raw", "-s", "16M"],
                   check=True, stdout=subprocess.DEVNULL)
    print("create", i, time.perf_counter() - t, flush=True)
    if i in windows:
        t = time.perf_counter()
        subprocess.run(["ndctl", "list", "-N"], check=True, stdout=subprocess.DEVNULL)
        print("list", i, time.perf_counter() - t, flush=True)
"""


def daemon_cpu(name: str) -> float:
    from fakesys import runtime
    with open(os.path.join(runtime.rundir(name), "pid")) as f:
        pid = int(f.read())
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 509
    tmp = tempfile.mkdtemp(prefix="fakesys-ramdax-")
    topo = os.path.join(tmp, "ramdax.toml")
    with open(topo, "w") as f:
        f.write(TOPOLOGY)
    name = f"bench-ramdax-{os.getpid()}"
    subprocess.run(FAKESYS + ["up", topo, "--name", name, "--state", os.path.join(tmp, "state")],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        subprocess.run(FAKESYS + ["run", "--name", name, "--", "sh", "-c",
                                  "ndctl disable-region all >/dev/null && ndctl init-labels -V 1.2 all "
                                  ">/dev/null 2>&1 && ndctl enable-region all >/dev/null"],
                       check=True, cwd=ROOT)
        proc = subprocess.Popen(FAKESYS + ["run", "--name", name, "--", sys.executable, "-c", INNER,
                                           str(count)] + [str(w) for w in WINDOWS],
                                cwd=ROOT, stdout=subprocess.PIPE, text=True)
        creates: dict[int, float] = {}
        lists: dict[int, float] = {}
        cpu: dict[int, float] = {0: daemon_cpu(name)}
        assert proc.stdout is not None
        for line in proc.stdout:
            kind, i, wall = line.split()
            (creates if kind == "create" else lists)[int(i)] = float(wall)
            if kind == "create":
                cpu[int(i)] = daemon_cpu(name)
        if proc.wait() != 0:
            raise SystemExit(f"the run failed after {len(creates)} namespaces")
    finally:
        subprocess.run(FAKESYS + ["down", "--name", name], cwd=ROOT)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(creates)} namespaces created on one RAMDAX region (ndctl create-namespace -m raw -s 16M)")
    for w in WINDOWS:
        if w > len(creates):
            continue
        lo = max(1, w - 9)
        n = w - lo + 1
        wall = sum(creates[i] for i in range(lo, w + 1)) / n
        dcpu = (cpu[w] - cpu[lo - 1]) / n
        print(f"  at {w:3d}: create {wall * 1e3:7.1f} ms wall, daemon CPU {dcpu * 1e3:6.1f} ms per create; "
              f"ndctl list -N {lists.get(w, float('nan')) * 1e3:7.1f} ms "
              f"({lists.get(w, float('nan')) / w * 1e3:.2f} ms per namespace)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
