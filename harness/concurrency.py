"""Concurrent tools on one fake: 8 processes creating and destroying at once.

Each worker is one ``fakesys run`` (one private namespace, one seccomp
listener) running a loop of real ``ndctl create-namespace`` /
``destroy-namespace`` (or ``daxctl create-device`` / ``disable-device`` +
``destroy-device``) commands, recording every command, its exit status and
what it reported.  Afterwards the daemon's invariants must hold and the
final state must be what the successful commands imply: every namespace
(dax device) a successful create reported and no successful destroy
removed is there with the reported uuid, size and mode, and nothing else.

Two modes:

* ``disjoint``: a machine with one region per worker (7 single-DIMM
  regions and a soft-reserved range for the daxctl worker); workers share
  the bus, the drivers' bind files, the FUSE server and the daemon, not
  their region.  Every command must succeed and report what it was asked
  for (uuid, size, mode); the final state must match exactly.
* ``shared``: the default machine, all workers on its three regions and
  its dax region.  ndctl and daxctl take no lock across their writes (nor
  would the kernel), so two creates racing for one seed can interleave: one
  may fail, or succeed with the other's uuid (or size, for a dax device),
  or both fail and leave the seed configured.  The final state must still
  be the namespaces and devices the successful commands *reported*, plus
  only leftovers of failed ones; interleavings are counted, not failed.
  A create that reported another's uuid or mode saw that tool's
  configuration under way: the namespace may then keep another mode, or be
  gone when that tool's failure rolled it back (seen once the daemon got
  fast enough for such overlaps).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from dataclasses import dataclass, field

from fakesys import runtime
from harness.crash import FAKESYS, namespaces

MiB = 1 << 20
WORKERS = 8


def disjoint_topology(workers: int = WORKERS) -> str:
    """One 1 GiB single-DIMM region per ndctl worker, plus 512 MiB of
    soft-reserved memory (hmem) for one daxctl worker."""
    lines = ['kernel = "6.19"', "", "[[bus]]", 'type = "nfit"', 'commands = ["cmd_call"]',
             f"acpi_slots = {workers - 1}", 'region_probe_order = "forward"']
    for i in range(workers - 1):
        lines += ["", "[[bus.dimm]]", f'name = "nvdimm{i}"', f"handle = {i:#x}", 'size = "1G"',
                  'labels = "v1.1"', f"serial = {0xc0000001 + i:#x}", "max_xfer = 4096"]
    for i in range(workers - 1):
        lines += ["", "[[bus.region]]", f"spa = {0x100000000 + i * 0x40000000:#x}", 'size = "1G"',
                  f'dimms = ["nvdimm{i}"]', f"range_index = {i + 1}"]
    lines += ["", "[[soft_reserved]]", f"start = {0x100000000 + workers * 0x40000000:#x}",
              'size = "512M"', "target_node = 1", ""]
    return "\n".join(lines)


# -- inside the sandbox: one worker -------------------------------------------------


def _run(cmd: list[str]) -> tuple[int, object, str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    try:
        out = json.loads(proc.stdout) if proc.stdout.strip() else None
    except ValueError:
        out = None
    return proc.returncode, out, proc.stderr.strip()[-300:]


def worker(args) -> int:
    rng = random.Random(args.seed)
    live: dict[str, dict] = {}   # dev -> what its create reported
    with open(args.log, "a") as log:
        def record(**entry) -> None:
            log.write(json.dumps(entry) + "\n")
            log.flush()

        for i in range(args.iterations):
            create = len(live) < 2 or (len(live) < 4 and rng.random() < 0.5)
            if args.kind == "dax":
                if create:
                    size = rng.choice([2, 4, 8]) * 2 * MiB
                    rc, out, err = _run(["daxctl", "create-device", "-r", args.region, "-s", str(size)])
                    made = out[0] if isinstance(out, list) and out else None
                    entry = dict(worker=args.id, op="dax-create", rc=rc, size=size, err=err)
                    if rc == 0 and made:
                        entry.update(dev=made["chardev"], got_size=made["size"], mode=made.get("mode"))
                        live[made["chardev"]] = entry
                    record(**entry)
                else:
                    dev = rng.choice(sorted(live))
                    rc1, _, err1 = _run(["daxctl", "disable-device", dev])
                    rc, _, err = _run(["daxctl", "destroy-device", dev]) if rc1 == 0 else (rc1, None, err1)
                    record(worker=args.id, op="dax-destroy", rc=rc, dev=dev, err=err)
                    if rc == 0:
                        del live[dev]
                continue
            if create:
                u = str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
                mode = rng.choice(["raw", "fsdax", "devdax", "sector"])
                # (a v1.1-label BTT sits 4 KiB in: 16 MiB cannot hold one, as in the kernel)
                size = rng.choice([32, 48] if mode == "sector" else [16, 32]) * MiB
                region = rng.choice(args.region.split(","))
                rc, out, err = _run(["ndctl", "create-namespace", "-r", region, "-m", mode,
                                     "-s", str(size), "--uuid", u, "-n", f"{args.id}-{i}"])
                entry = dict(worker=args.id, op="create", rc=rc, uuid=u, mode=mode, size=size,
                             region=region, err=err)
                if rc == 0 and isinstance(out, dict):
                    # ndctl reports the claim's uuid for fsdax/devdax/sector:
                    # the namespace's own is in sysfs (fixed while enabled)
                    try:
                        with open(f"/sys/bus/nd/devices/{out.get('dev')}/uuid") as f:
                            got_uuid = f.read().strip()
                    except OSError:
                        got_uuid = None
                    entry.update(dev=out.get("dev"), got_uuid=got_uuid, got_mode=out.get("mode"),
                                 name=out.get("name"))
                    live[out["dev"]] = entry
                record(**entry)
            else:
                dev = rng.choice(sorted(live))
                rc, _, err = _run(["ndctl", "destroy-namespace", "-f", dev])
                record(worker=args.id, op="destroy", rc=rc, dev=dev, uuid=live[dev].get("got_uuid"), err=err)
                del live[dev]   # (even after a failure: its name may be reused, never touch it again)
    return 0


# -- the harness ----------------------------------------------------------------------


@dataclass
class ConcurrencyStats:
    runs: int = 0
    workers: int = 0
    commands: int = 0
    succeeded: int = 0
    failed: int = 0
    interleaved: int = 0   # shared mode: a create reported another uuid than it asked for
    interleavings: list = field(default_factory=list)
    seconds: float = 0.0
    violations: list = field(default_factory=list)


MODES = {"raw": "raw", "fsdax": "fsdax", "devdax": "devdax", "sector": "sector"}
SYSFS_MODE = {"raw": "raw", "fsdax": "memory", "devdax": "dax", "sector": "safe"}


def dax_devices(name: str, region_dir_hint: str = "hmem") -> dict[str, int]:
    """chardev -> size of every dax device with a size on a dynamic region."""
    snap = json.loads(runtime.control(name, "snapshot", timeout=60))
    out = {}
    for path, value in snap.items():
        parts = path.split("/")
        if parts[-1] == "size" and len(parts) > 2 and re.fullmatch(r"dax\d+\.\d+", parts[-2]) and \
                parts[-3].startswith(region_dir_hint) and isinstance(value, str):
            out[parts[-2]] = int(value)
    return out


def one_run(mode: str, iterations: int, seed: int, workers: int = WORKERS,
            verbose: bool = False) -> ConcurrencyStats:
    st = ConcurrencyStats(runs=1, workers=workers)
    work = tempfile.mkdtemp(prefix="fakesys-conc-")
    name = f"conc-{os.getpid()}-{seed}"
    if mode == "disjoint":
        topo = os.path.join(work, "concurrency.toml")
        with open(topo, "w") as f:
            f.write(disjoint_topology(workers))
        regions = [f"region{i}" for i in range(workers - 1)]
        dax_region = str(workers - 1)
    else:
        from fakesys.platform.topology import default_path
        topo = default_path()
        regions = ["region0,region1,region2"] * (workers - 2)
        dax_region = "3"
    up = subprocess.run(FAKESYS + ["up", topo, "--name", name, "--state", os.path.join(work, "state")],
                        capture_output=True, text=True, timeout=60)
    if up.returncode != 0:
        raise RuntimeError(up.stderr)
    log = os.path.join(work, "log.jsonl")
    try:
        # free the dax region: its boot device to devdax, disabled, sized 0
        dev0 = f"dax{dax_region}.0"
        subprocess.run(FAKESYS + ["run", "--name", name, "--", "sh", "-c",
                                  f"daxctl reconfigure-device -m devdax -f {dev0} && "
                                  f"daxctl disable-device {dev0} && daxctl destroy-device {dev0}"],
                       capture_output=True, timeout=120)
        procs = []
        t0 = time.monotonic()
        for w in range(workers):
            dax = (mode == "disjoint" and w == workers - 1) or (mode == "shared" and w >= workers - 2)
            region = dax_region if dax else regions[w]
            argv = FAKESYS + ["run", "--name", name, "--", sys.executable, "-m", "harness.concurrency",
                              "worker", "--id", f"w{w}", "--kind", "dax" if dax else "nd", "--region", region,
                              "--iterations", str(iterations), "--seed", str(seed * 100 + w), "--log", log]
            procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
        for p in procs:
            _, err = p.communicate(timeout=1800)
            if p.returncode != 0:
                st.violations.append(f"a worker exited {p.returncode}: {err[-500:]}")
        st.seconds = time.monotonic() - t0
        entries = [json.loads(line) for line in open(log)] if os.path.exists(log) else []
        _verify(st, mode, name, entries)
        if verbose:
            print(f"{mode} seed {seed}: {st.commands} commands, {st.failed} failed, "
                  f"{st.interleaved} interleaved, {len(st.violations)} violations, {st.seconds:.0f} s",
                  file=sys.stderr)
    finally:
        subprocess.run(FAKESYS + ["down", "--name", name], capture_output=True, timeout=60)
        rd = runtime.rundir(name)
        if os.path.isdir(rd) and not runtime.is_mounted(os.path.join(rd, "mnt")):
            shutil.rmtree(rd, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return st


def _verify(st: ConcurrencyStats, mode: str, name: str, entries: list[dict]) -> None:
    reply = json.loads(runtime.control(name, "check", timeout=60))
    if reply["violations"]:
        st.violations.append(f"invariants: {reply['violations']}")
    if reply["faults"]:
        st.violations.append(f"the daemon contained {reply['faults']} faults")
    expected: dict[str, dict] = {}
    expected_dax: dict[str, int] = {}
    for e in entries:
        st.commands += 1
        if e["rc"] == 0:
            st.succeeded += 1
        else:
            st.failed += 1
            if mode == "disjoint":
                st.violations.append(f"{e['worker']} {e['op']} failed ({e['rc']}): {e.get('err')}")
        if e["rc"] != 0:
            continue
        if e["op"] == "create":
            if e.get("dev") is None:
                # ndctl exits 0 without a report when it cannot describe the
                # namespace it made (another tool reconfigured that seed meanwhile)
                what = f"{e['worker']} asked for {e['uuid']} {e['mode']}: succeeded, reported nothing"
                if mode == "disjoint":
                    st.violations.append(what)
                st.interleaved += 1
                st.interleavings.append(what)
                continue
            if e.get("got_uuid") != e["uuid"] or e.get("got_mode") != e["mode"]:
                what = (f"{e['worker']} asked for {e['uuid']} {e['mode']}, "
                        f"got {e.get('dev')} {e.get('got_uuid')} {e.get('got_mode')}")
                if mode == "disjoint":
                    st.violations.append(what)
                st.interleaved += 1
                st.interleavings.append(what)
                # what it reported was partly another tool's configuration under
                # way on the same seed (a claim attached and failing to enable,
                # or rolled back by that tool's failure): which mode the
                # namespace keeps, or whether it stays, is that race's outcome
                e = dict(e, got_mode=None, raced=True)
            expected[e["got_uuid"]] = {"size": e["size"], "mode": SYSFS_MODE.get(e.get("got_mode"), "?"),
                                       "dev": e["dev"], "raced": e.get("raced", False)}
        elif e["op"] == "destroy":
            expected.pop(e.get("uuid"), None)
        elif e["op"] == "dax-create":
            expected_dax[e["dev"]] = e["got_size"]
        elif e["op"] == "dax-destroy":
            expected_dax.pop(e["dev"], None)
    actual = namespaces(name)
    for u, want in expected.items():
        got = actual.get(u)
        if got is None and want["raced"] and mode == "shared":
            st.interleavings.append(f"namespace {u} ({want}), reported by a raced create, is gone")
        elif got is None:
            st.violations.append(f"namespace {u} ({want}) that a successful create reported is gone")
        elif want["mode"] != "?" and got["mode"] != want["mode"]:
            st.violations.append(f"namespace {u}: mode {got['mode']}, reported {want['mode']}")
        elif mode == "disjoint" and got["size"] < want["size"] - 4 * MiB:
            st.violations.append(f"namespace {u}: size {got['size']}, asked {want['size']}")
    # shared mode: two creates racing for one seed can both fail and leave
    # that namespace configured (one's size, the other's claim), as with a
    # real kernel; its uuid is then one a failed command asked for
    failed = {e.get("uuid") for e in entries if e["rc"] != 0 and e["op"] in ("create", "destroy")}
    for u in set(actual) - set(expected):
        if mode == "shared" and u in failed:
            st.interleaved += 1
            st.interleavings.append(f"namespace {u} ({actual[u]}) left by failed commands")
        else:
            st.violations.append(f"namespace {u} ({actual[u]}) no successful command explains")
    got_dax = {d: s for d, s in dax_devices(name).items() if s}
    if mode == "shared" and set(got_dax) == set(expected_dax) and got_dax != expected_dax:
        # daxctl create-device writes create, then the seed's size, then binds:
        # a second daxctl can resize the same seed in between (no lock, as on
        # the kernel); the device is still the one reported
        st.interleaved += 1
        st.interleavings.append(f"dax sizes {got_dax}, reported {expected_dax}")
    elif got_dax != expected_dax:
        st.violations.append(f"dax devices {got_dax}, the successful commands imply {expected_dax}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/concurrency")
    sub = p.add_subparsers(dest="verb")
    w = sub.add_parser("worker")
    w.add_argument("--id", required=True)
    w.add_argument("--kind", choices=["nd", "dax"], default="nd")
    w.add_argument("--region", required=True)
    w.add_argument("--iterations", type=int, default=10)
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--log", required=True)
    r = sub.add_parser("run")
    r.add_argument("--runs", type=int, default=3, help="runs per mode")
    r.add_argument("--iterations", type=int, default=8, help="commands per worker and run")
    r.add_argument("--mode", choices=["disjoint", "shared", "both"], default="both")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.verb == "worker":
        return worker(args)
    if args.verb != "run":
        p.print_help()
        return 2
    total = ConcurrencyStats()
    modes = ["disjoint", "shared"] if args.mode == "both" else [args.mode]
    for m in modes:
        for i in range(args.runs):
            st = one_run(m, args.iterations, args.seed + i, verbose=args.verbose)
            print(f"{m} run {i + 1}: {st.workers} processes, {st.commands} commands "
                  f"({st.succeeded} ok, {st.failed} failed, {st.interleaved} interleaved), "
                  f"{st.seconds:.0f} s, violations {len(st.violations)}")
            for v in st.violations:
                print("  " + v)
            total.runs += 1
            total.commands += st.commands
            total.violations += st.violations
    print(f"concurrent runs {total.runs}, commands {total.commands}, violations {len(total.violations)}")
    return 1 if total.violations else 0


if __name__ == "__main__":
    sys.exit(main())
