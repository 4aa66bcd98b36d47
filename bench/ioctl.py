#!/usr/bin/env python3
"""ioctl bridge benchmarks, printed in one run (root needed for the namespaces).

1. One intercepted ioctl: ND_CMD_GET_CONFIG_SIZE on /dev/nmem0, timed
   call by call by a small C client (bench/nd_ioctl_client.c, built here
   with cc) inside ``fakesys run``; median and p90 over COUNT calls.  For
   scale, the same client times an ioctl the filter does not trap (TCGETS
   on the same fd) and an 'N' ioctl on /dev/null (trapped, then let
   through with SECCOMP_USER_NOTIF_FLAG_CONTINUE: the cost of the trap and
   the /proc lookups without the model).
2. ``ndctl read-labels nmem0 -o /dev/null`` on the 128 KiB label area (one
   GET_CONFIG_SIZE and 33 GET_CONFIG_DATA of at most 4076 bytes):
   median wall time over ROUNDS runs, next to ``ndctl list -D`` (the same
   discovery work without any ioctl).
3. The same read-labels with a max_xfer of 8 bytes, RAMDAX's value
   (bench/max-xfer-8.toml): 16384 GET_CONFIG_DATA; median of 3 runs.

Usage: .venv/bin/python bench/ioctl.py [COUNT [ROUNDS]]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKESYS = [sys.executable, "-m", "fakesys.cli"]
TOPOLOGY = os.path.join(ROOT, "devices", "qemu-nvdimm.toml")
XFER8 = os.path.join(ROOT, "bench", "max-xfer-8.toml")
CLIENT_SRC = os.path.join(ROOT, "bench", "nd_ioctl_client.c")

# Runs inside the namespace: time each command invocation, print the median in seconds.
INNER = """
import statistics, subprocess, sys, time
cmd, rounds = sys.argv[2:], int(sys.argv[1])
subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
samples = []
for _ in range(rounds):
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    samples.append(time.perf_counter() - t)
print(statistics.median(samples))
"""


def run_in(name: str, argv: list[str]) -> str:
    proc = subprocess.run(FAKESYS + ["run", "--name", name, "--"] + argv, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout


def per_call(name: str, client: str, count: int, mode: str) -> tuple[float, float]:
    samples = sorted(int(x) for x in run_in(name, [client, "/dev/nmem0", str(count), mode]).split())
    return statistics.median(samples) / 1000, samples[int(len(samples) * 0.9)] / 1000


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    if os.getuid() != 0:
        raise SystemExit("run as root (mount namespaces)")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("needs a C compiler for the client")
    tmp = tempfile.mkdtemp(prefix="fakesys-bench-ioctl-")
    name = f"bench-ioctl-{uuid.uuid4().hex[:8]}"
    name8 = name + "-x8"
    client = os.path.join(tmp, "nd_ioctl_client")
    try:
        subprocess.run([cc, "-O2", "-o", client, CLIENT_SRC], check=True)
        subprocess.run(FAKESYS + ["up", TOPOLOGY, "--name", name, "--state", os.path.join(tmp, "state")],
                       check=True, capture_output=True, cwd=ROOT)
        per_call(name, client, 200, "nd")                       # warm up
        nd = per_call(name, client, count, "nd")
        tty = per_call(name, client, count, "tty")
        cont = per_call(name, client, count, "cont")
        print(f"one ioctl, {count} calls (median / p90, microseconds):")
        print(f"  ND_CMD_GET_CONFIG_SIZE on /dev/nmem0, served by the daemon  {nd[0]:8.1f} / {nd[1]:8.1f}")
        print(f"  'N' ioctl on /dev/null, trapped then CONTINUE            {cont[0]:8.1f} / {cont[1]:8.1f}")
        print(f"  TCGETS on the same fd, not trapped                       {tty[0]:8.1f} / {tty[1]:8.1f}")
        read_labels = float(run_in(name, [sys.executable, "-c", INNER, str(rounds),
                                          "ndctl", "read-labels", "nmem0", "-o", "/dev/null"]))
        list_d = float(run_in(name, [sys.executable, "-c", INNER, str(rounds), "ndctl", "list", "-D"]))
        print(f"ndctl read-labels nmem0 -o /dev/null (128 KiB, 34 ioctls), median of {rounds}:")
        print(f"  {read_labels * 1000:8.2f} ms   (ndctl list -D, no ioctl: {list_d * 1000:.2f} ms; "
              f"difference {(read_labels - list_d) * 1000:.2f} ms)")
        subprocess.run(FAKESYS + ["up", XFER8, "--name", name8, "--state", os.path.join(tmp, "state8")],
                       check=True, capture_output=True, cwd=ROOT)
        small = float(run_in(name8, [sys.executable, "-c", INNER, "3",
                                     "ndctl", "read-labels", "nmem0", "-o", "/dev/null"]))
        print("ndctl read-labels nmem0 -o /dev/null, max_xfer 8 (128 KiB, 16385 ioctls), median of 3:")
        print(f"  {small * 1000:8.1f} ms   ({(small - list_d) / 16385 * 1e6:.1f} us per ioctl)")
    finally:
        for n in (name, name8):
            subprocess.run(FAKESYS + ["down", "--name", n], capture_output=True, cwd=ROOT)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
