#!/usr/bin/env python3
"""Foundation benchmarks, printed in one run (root needed for the namespaces).

1. ``ndctl list -BDRNu -vvv`` on the default topology: wall time inside
   ``fakesys run`` divided by the same command on a static copy of the same
   tree on tmpfs bound over /sys (target <= 3).  Medians of all samples,
   taken in alternating blocks of five (this VM's speed drifts by tens of
   percent within a minute; separate blocks measured the drift).
   The static copy has the fake's /dev nodes too, so that both runs print
   the same devices (only the order of entries differs: tmpfs lists a
   directory in another order than kernfs).
2. One attribute's open+read+close in the same two trees (median of 5
   loops of 2000), the unit ``ndctl list`` pays ~300 times.
3. ``fakesys up`` until the mount answers (target < 0.5 s).

Usage: .venv/bin/python bench/foundation.py [ROUNDS]
"""

from __future__ import annotations

import os
import json
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKESYS = [sys.executable, "-m", "fakesys.cli"]
LIST = ["ndctl", "list", "-BDRNu", "-vvv"]

# Runs inside the namespace: time each ndctl invocation, print the samples.
INNER = """
import subprocess, sys, time
cmd, rounds = sys.argv[2:], int(sys.argv[1])
subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)  # warm caches
for _ in range(rounds):
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    print(time.perf_counter() - t)
"""
BLOCK = 5  # samples per block; fake and tmpfs blocks alternate, so drift hits both
ATTR = "/sys/bus/nd/devices/region1/size"
# Runs inside the namespace: seconds per open+read+close of one attribute.
OPEN_READ_CLOSE = """
import os, statistics, sys, time
path, n = sys.argv[1], 2000
loops = []
for _ in range(6):  # the first warms the caches
    t = time.perf_counter()
    for _ in range(n):
        fd = os.open(path, os.O_RDONLY)
        os.read(fd, 4096)
        os.close(fd)
    loops.append((time.perf_counter() - t) / n)
print(statistics.median(loops[1:]))
"""


def copy_tree(src: str, dst: str) -> None:
    """A static copy of the fake sysfs: same names, links and contents."""
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        target = os.path.join(dst, rel)
        os.makedirs(target, exist_ok=True)
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            out = os.path.join(target, name)
            if os.path.islink(path):
                os.symlink(os.readlink(path), out)
                if name in dirnames:
                    dirnames.remove(name)
            elif name in filenames:
                try:
                    with open(path, "rb") as f:
                        data = f.read()
                except OSError:
                    data = b""
                with open(out, "wb") as f:
                    f.write(data)
                os.chmod(out, os.stat(path).st_mode & 0o777)


# Runs inside the fake: the entries of its /dev, for copy_dev().
DEV_NODES = """
import json, os, stat
nodes = []
for name in sorted(os.listdir("/dev")):
    st = os.lstat("/dev/" + name)
    if stat.S_ISLNK(st.st_mode):
        nodes.append([name, "l", os.readlink("/dev/" + name)])
    elif stat.S_ISCHR(st.st_mode):
        nodes.append([name, "c", st.st_rdev, st.st_mode & 0o7777])
    elif stat.S_ISREG(st.st_mode):
        nodes.append([name, "f", st.st_size, st.st_mode & 0o7777])
    elif stat.S_ISDIR(st.st_mode):
        nodes.append([name, "d"])
print(json.dumps(nodes))
"""


def copy_dev(nodes: list[list], dst: str) -> None:
    """The fake's /dev for the static copy: the same nodes with the same
    numbers, so that daxctl finds its dax devices there too (without them
    it skips one and the baseline does less work than the fake).  Block
    device stand-ins become empty sparse files of their size; directories
    (pts, shm) stay empty, the host's are mounted over them."""
    os.makedirs(dst)
    for name, kind, *rest in nodes:
        path = os.path.join(dst, name)
        if kind == "l":
            os.symlink(rest[0], path)
        elif kind == "c":
            os.mknod(path, stat.S_IFCHR | rest[1], rest[0])
        elif kind == "f":
            with open(path, "wb") as f:
                f.truncate(rest[0])
            os.chmod(path, rest[1])
        else:
            os.mkdir(path)


def _printed(env: list[str]) -> list[str]:
    """The sorted lines ``ndctl list`` prints (stderr too) in an environment."""
    script = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:], stderr=subprocess.STDOUT).returncode)"
    out = subprocess.run(env + [script] + LIST, check=True, cwd=ROOT, capture_output=True, text=True).stdout
    return sorted(out.splitlines())


def _samples(cmd: list[str]) -> list[float]:
    out = subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, text=True).stdout
    return [float(x) for x in out.split()]


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    name = f"bench-{os.getpid()}"
    up_times = []
    for i in range(5):
        t = time.perf_counter()
        subprocess.run(FAKESYS + ["up", "--name", f"{name}-{i}"], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
        up_times.append(time.perf_counter() - t)
        subprocess.run(FAKESYS + ["down", "--name", f"{name}-{i}"], check=True, cwd=ROOT)

    state = tempfile.mkdtemp(prefix="fakesys-bench-")
    mnt = subprocess.run(FAKESYS + ["up", "--name", name, "--state", state], check=True, cwd=ROOT,
                         capture_output=True, text=True).stdout.strip()
    static = tempfile.mkdtemp(prefix="fakesys-static-", dir="/dev/shm")
    try:
        subprocess.run(FAKESYS + ["run", "--name", name, "--", "sh", "-c",
                                  "ndctl create-namespace -r region1 -m fsdax -s 256M && "
                                  "ndctl create-namespace -r region2 -m devdax -s 256M"],
                       check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        copy_tree(os.path.join(mnt, "sys"), os.path.join(static, "sys"))
        in_fake = FAKESYS + ["run", "--name", name, "--", sys.executable, "-c"]
        nodes = subprocess.run(in_fake + [DEV_NODES], check=True, cwd=ROOT, capture_output=True).stdout
        copy_dev(json.loads(nodes), os.path.join(static, "dev"))
        in_static = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                     f'mount --bind "{static}/sys" /sys && mount --bind /dev/pts "{static}/dev/pts" && '
                     f'mount --rbind "{static}/dev" /dev && exec "$0" "$@"', sys.executable, "-c"]
        same = _printed(in_fake) == _printed(in_static)
        fakes: list[float] = []
        statics: list[float] = []
        for _ in range(max(1, rounds // BLOCK)):
            fakes += _samples(in_fake + [INNER, str(BLOCK)] + LIST)
            statics += _samples(in_static + [INNER, str(BLOCK)] + LIST)
        fake, tmpfs = statistics.median(fakes), statistics.median(statics)
        rounds = len(fakes)
        attr_fake, = _samples(in_fake + [OPEN_READ_CLOSE, ATTR])
        attr_tmpfs, = _samples(in_static + [OPEN_READ_CLOSE, ATTR])
    finally:
        subprocess.run(FAKESYS + ["down", "--name", name], cwd=ROOT)
        shutil.rmtree(static, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
    print(f"ndctl list -BDRNu -vvv: fakesys {fake * 1e3:.1f} ms, static tmpfs copy {tmpfs * 1e3:.1f} ms, "
          f"ratio {fake / tmpfs:.2f} (target <= 3; median of {rounds})")
    print(f"  both print the same lines (in another order): {'yes' if same else 'NO: the baseline differs'}")
    print(f"one attribute's open+read+close: fakesys {attr_fake * 1e6:.1f} us, "
          f"static tmpfs copy {attr_tmpfs * 1e6:.1f} us")
    print(f"fakesys up until the mount answers: median {statistics.median(up_times) * 1e3:.0f} ms "
          f"(min {min(up_times) * 1e3:.0f}, max {max(up_times) * 1e3:.0f}; target < 500 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
