"""Crash consistency: ``kill -9`` the daemon during ndctl operations, boot again.

Each round picks an operation the real ndctl performs on a live fake
(create-namespace with a given uuid, destroy-namespace, or reconfigure a
namespace to another mode), starts it inside ``fakesys run`` and kills the
daemon with SIGKILL part way:

* ``timer`` rounds send SIGKILL from outside after a random delay within
  the operation's usual duration;
* ``write`` rounds arm the daemon (control command ``crash-after N``) to
  SIGKILL itself right after its N-th write to media or a label area from
  then on, N random, so the kill lands between two of the kernel's writes
  (label slot, index block, info block, a tool's write to /dev/pmemN).

Then ``fakesys up`` on the same state directory (which must clean the
stale mount) and the checks:

* every label area, read from the state files: both index blocks are
  judged; at least one is valid wherever one was before, the current one's
  used slots hold valid labels (``check(kernel, after_crash=True)`` in the
  daemon: a torn non-current index block and labels still flagged UPDATING
  are what the kernel itself can leave, and are counted, not failed);
* every namespace that existed before and was not the operation's target
  is back with the same uuid, size and mode, and the bytes of its DPA
  ranges (labels, info block, data) are byte-identical;
* the target is in a state the kernel could leave: for a create, absent or
  present with the requested uuid and size in the requested mode or raw
  (info block not yet written); for a destroy, present (possibly raw, its
  info block already wiped) or absent; for a reconfigure (ndctl destroys
  the namespace, then creates one of the same size with a new uuid), the
  old namespace in its old mode or raw, nothing, or the new one in the new
  mode or raw;
* no other namespace appeared.

Media are MAP_SHARED mappings of the state files, so a SIGKILL loses no
write the daemon made: what the checks see is exactly the sequence of
writes up to the kill, as after a power loss with persistent memory.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from dataclasses import dataclass, field

from fakesys import runtime

MiB = 1 << 20
FAKESYS = [sys.executable, "-m", "fakesys.cli"]

# -- the daemon side: crash after the N-th write ------------------------------------

_BUDGET: dict = {"left": 0}


async def _crash_after(ctl, req) -> bool:
    """Control verb ``crash-after N`` (daemon.py answers it only for a daemon
    started with ``--harness harness.crash``): arm, then answer ``ok``."""
    if len(req.args) != 1 or not req.args[0].isdigit():
        return False
    arm(ctl.machine, int(req.args[0]))
    await req.reply("ok")
    return True


def arm(machine, n: int) -> None:
    """SIGKILL this process right after the ``n``-th write to any media or
    label store from now on (0 disarms)."""
    _BUDGET["left"] = n
    for store in machine.stores:
        if getattr(store, "_crash_armed", False):
            continue
        inner = store.write

        def write(offset: int, data: bytes, inner=inner):
            result = inner(offset, data)
            if _BUDGET["left"] > 0:
                _BUDGET["left"] -= 1
                if _BUDGET["left"] == 0:
                    os.kill(os.getpid(), signal.SIGKILL)
            return result
        store.write = write
        store._crash_armed = True


#: the verbs a daemon started with ``--harness harness.crash`` answers besides its own
CONTROL_VERBS = {"crash-after": _crash_after}


# -- reading a state directory offline ----------------------------------------------------


class _FileIo:
    def __init__(self, path: str) -> None:
        self.path = path
        self.config_size = os.path.getsize(path)
        with open(path, "rb") as f:
            self.data = f.read()

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset:offset + length]

    def write(self, offset: int, data: bytes) -> None:
        raise AssertionError("read-only")


def label_areas(topology, state: str) -> dict[str, dict]:
    """Per DIMM: the validity of both index blocks and the active labels."""
    from fakesys.kernel.nvdimm.label import LabelArea
    out = {}
    for bus in topology.buses:
        for d in getattr(bus, "dimms", []):
            path = os.path.join(state, f"{d.name}.labels")
            if not d.label_size or not os.path.exists(path):
                continue
            io = _FileIo(path)
            area = LabelArea(io)
            valid = area.validate()
            blocks = [False, False]
            if valid:
                raw = LabelArea(io)
                raw._label_size, raw._data = area.label_size, bytearray(io.data)
                blocks = [raw._index_block_valid(i) for i in (0, 1)]
            out[d.name] = {"valid": valid, "blocks": blocks,
                           "labels": area.labels() if valid else [], "media": os.path.join(state, f"{d.name}.media")}
    return out


def namespace_media(areas: dict[str, dict]) -> dict[str, str]:
    """uuid -> digest of the bytes of all its DPA ranges (every DIMM)."""
    ranges: dict[str, list] = collections.defaultdict(list)
    for name, area in sorted(areas.items()):
        for label in area["labels"]:
            ranges[str(label.uuid)].append((area["media"], label.dpa, label.rawsize))
    out = {}
    for uuid, parts in ranges.items():
        h = hashlib.blake2b(digest_size=16)
        for path, dpa, size in sorted(parts):
            with open(path, "rb") as f:
                f.seek(dpa)
                left = size
                while left:
                    chunk = f.read(min(left, 8 * MiB))
                    if not chunk:
                        break
                    h.update(chunk)
                    left -= len(chunk)
        out[uuid] = h.hexdigest()
    return out


def _ranges_of(u: str, areas0: dict, areas: dict) -> str:
    """Where namespace ``u`` lay before, and which labels now overlap it
    (what a media violation needs to be understood)."""
    mine = [(dimm, l.dpa, l.rawsize) for dimm, a in areas0.items()
            for l in a["labels"] if str(l.uuid) == u]
    over = [f"{l.uuid}@{dimm}:{l.dpa:#x}+{l.rawsize:#x}" for dimm, a in areas.items()
            for l in a["labels"] if str(l.uuid) != u and any(
                d == dimm and l.dpa < dpa + size and dpa < l.dpa + l.rawsize
                for d, dpa, size in mine)]
    where = ", ".join(f"{d}:{dpa:#x}+{size:#x}" for d, dpa, size in mine)
    return f"was at {where}; overlapped now by {', '.join(over) or 'no label'}"


# -- the live side ---------------------------------------------------------------------------


def namespaces(name: str) -> dict[str, dict]:
    """uuid -> {dev, region, size, mode} of every pmem namespace with a size,
    from the daemon's snapshot."""
    snap = json.loads(runtime.control(name, "snapshot", timeout=60))
    devs: dict[str, dict] = collections.defaultdict(dict)
    for path, value in snap.items():
        parts = path.split("/")
        if len(parts) >= 2 and parts[-2].startswith("namespace") and isinstance(value, str):
            if parts[-1] in ("uuid", "size", "mode", "holder"):
                devs["/".join(parts[:-1])][parts[-1]] = value.strip()
    out = {}
    for path, attrs in devs.items():
        if attrs.get("uuid") and attrs.get("size", "0") != "0":
            region = next(p for p in path.split("/") if p.startswith("region"))
            # A claim device that is not bound (a failed enable leaves one,
            # as ndctl cannot delete a claimed namespace) gives the mode, but
            # is not on media: a boot finds the namespace raw.
            holder = attrs.get("holder", "")
            uevent = snap.get(f"{path.rsplit('/', 1)[0]}/{holder}/uevent", "")
            out[attrs["uuid"]] = {"dev": path.rsplit("/", 1)[-1], "region": region,
                                  "size": int(attrs["size"]), "mode": attrs.get("mode", ""),
                                  "unbound_claim": bool(holder) and "DRIVER=" not in str(uevent)}
    return out


MODES = {"raw": "raw", "fsdax": "memory", "devdax": "dax", "sector": "safe"}


@dataclass
class CrashStats:
    rounds: int = 0
    kills: int = 0
    kills_mid_op: int = 0           # the killed tool failed: the kill hit the operation
    by_op: collections.Counter = field(default_factory=collections.Counter)
    outcomes: collections.Counter = field(default_factory=collections.Counter)  # target states seen
    torn_index_blocks: int = 0
    updating_labels: set = field(default_factory=set)   # (dimm, uuid) seen flagged UPDATING
    stale_mounts_cleaned: int = 0
    connections_aborted: int = 0    # of a killed daemon that could not finish dying (_wait_tool)
    namespaces_checked: int = 0
    bytes_compared: int = 0
    violations: list = field(default_factory=list)


class CrashHarness:
    def __init__(self, topology: str, workdir: str, seed: int, name: str | None = None,
                 max_namespaces: int = 4) -> None:
        from fakesys.platform.topology import load
        self.topology_path = topology
        self.topology = load(topology)
        self.state = os.path.join(workdir, "state")
        self.name = name or f"crash-{os.getpid()}"
        self.rng = random.Random(seed)
        self.stats = CrashStats()
        self.max_namespaces = max_namespaces
        self.durations: dict[str, float] = {}
        self.last = ""  # the last round's operation and kill (for -v)
        self.up()

    # -- daemon lifetime ---------------------------------------------------------------------

    def up(self) -> None:
        proc = subprocess.run(FAKESYS + ["up", self.topology_path, "--name", self.name, "--state", self.state,
                                         "--harness", "harness.crash"],
                              capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"fakesys up failed: {proc.stderr}")
        if "stale mount" in proc.stderr:
            self.stats.stale_mounts_cleaned += 1

    def pid(self) -> int:
        with open(os.path.join(runtime.rundir(self.name), "pid")) as f:
            return int(f.read())

    def wait_dead(self, pid: int, timeout: float = 30.0) -> None:
        """Wait for a killed daemon to be gone (it unmaps its media first)."""
        deadline = time.monotonic() + timeout
        while runtime.alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)

    def down(self) -> None:
        subprocess.run(FAKESYS + ["down", "--name", self.name], capture_output=True, timeout=60)
        runtime.remove_rundir(self.name)   # also after a daemon it killed

    def tool(self, command: str, background: bool = False):
        argv = FAKESYS + ["run", "--name", self.name, "--", "sh", "-c", command]
        if background:
            return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    start_new_session=True)
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)

    # -- one round -----------------------------------------------------------------------------

    def choose(self, before: dict[str, dict]) -> tuple[str, str, dict]:
        rng = self.rng
        regions = sorted({r.split("/")[-1] for r in os.listdir(os.path.join(runtime.rundir(self.name), "mnt/sys/bus/nd/devices"))
                          if r.startswith("region")})
        if not before or (len(before) < self.max_namespaces and rng.random() < 0.5):
            u = str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
            mode = rng.choice(list(MODES))
            # (a v1.1-label BTT sits 4 KiB in: 16 MiB cannot hold one, as in the kernel)
            size = rng.choice([32, 48] if mode == "sector" else [16, 32, 48]) * MiB
            region = rng.choice(regions)
            return "create", (f"ndctl create-namespace -r {region} -m {mode} -s {size} "
                              f"--uuid {u} -n crash"), {"uuid": u, "mode": MODES[mode], "size": size,
                                                        "region": region}
        u = rng.choice(sorted(before))
        ns = before[u]
        if rng.random() < 0.5:
            return "destroy", f"ndctl destroy-namespace -f {ns['dev']}", {"uuid": u}
        mode = rng.choice([m for m in MODES if MODES[m] != ns["mode"]])
        return "reconfigure", f"ndctl create-namespace -f -e {ns['dev']} -m {mode}", \
            {"uuid": u, "mode": MODES[mode], "old": ns["mode"], "size": ns["size"]}

    def _wait_tool(self, proc: subprocess.Popen, command: str) -> None:
        """Wait for the tool, as a user would for a tool whose fake crashed.

        A daemon killed while it invalidates a page that the tool's READ holds
        locked cannot finish dying (server._invalidate): its connection stays
        alive and the READ unanswered until the connection is aborted, which
        `fakesys down` and `up` do for a dead daemon's mount.  So after 10 s
        with no daemon answering, the harness aborts it as they would.
        """
        try:
            proc.communicate(timeout=10)
            return
        except subprocess.TimeoutExpired:
            pass
        if runtime.status(self.name) is None:
            mnt = os.path.join(runtime.rundir(self.name), "mnt")
            if runtime.abort_connection(mnt):
                self.stats.connections_aborted += 1
        try:
            proc.communicate(timeout=110)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            self._violate(f"{command}: the tool hung after the daemon died")

    def observe(self) -> tuple[dict, dict, dict]:
        live = namespaces(self.name)
        areas = label_areas(self.topology, self.state)
        return live, areas, namespace_media(areas)

    def round(self) -> None:
        st = self.stats
        st.rounds += 1
        before, areas0, media0 = self.observe()
        op, command, target = self.choose(before)
        st.by_op[op] += 1
        how = self.rng.choice(["timer", "write"])
        pid = self.pid()
        self.last = f"{op} {target['uuid']}: {command} ({how}"
        if how == "write":
            n = self.rng.randint(1, 48)
            self.last += f" {n}"
            runtime.control(self.name, f"crash-after {n}")
        self.last += ")"
        t0 = time.monotonic()
        proc = self.tool(command, background=True)
        sent = False
        if how == "timer":
            typical = self.durations.get(op, 0.6)
            time.sleep(self.rng.uniform(0.05, typical))
            try:
                os.kill(pid, signal.SIGKILL)
                sent = True
            except ProcessLookupError:
                pass
        self._wait_tool(proc, command)
        elapsed = time.monotonic() - t0
        # a SIGKILLed daemon may take a while to be gone (unmapping its media)
        killed = sent or not runtime.alive(pid) or runtime.status(self.name) is None
        if not killed:
            # the operation finished before the kill point: it must have done
            # exactly what it says, then go on without a kill
            if how == "write":
                runtime.control(self.name, "crash-after 0")
            if proc.returncode == 0:
                self.durations[op] = max(self.durations.get(op, 0.0) * 0.8, elapsed)
            after = namespaces(self.name)
            self._verify(op, target, before, after, media0, None, complete=proc.returncode == 0)
            return
        st.kills += 1
        if proc.returncode != 0:
            st.kills_mid_op += 1
        self.wait_dead(pid)
        self.up()
        reply = json.loads(runtime.control(self.name, "check crash", timeout=60))
        if reply["violations"]:
            self._violate(f"{command} killed ({how}): invariants after reboot: {reply['violations']}")
        after, areas, media = self.observe()
        for dimm, area in areas.items():
            was = areas0.get(dimm, {})
            if was.get("valid") and not area["valid"]:
                self._violate(f"{command} killed ({how}): {dimm} lost its label index")
            if area["valid"] and area["blocks"] != [True, True]:
                st.torn_index_blocks += 1
            st.updating_labels.update((dimm, str(l.uuid)) for l in area["labels"] if l.flags & 0x8)
        self._verify(op, target, before, after, media0, media, complete=False,
                     areas=(areas0, areas))

    def _verify(self, op: str, target: dict, before: dict, after: dict, media0: dict,
                media: dict | None, complete: bool,
                areas: tuple[dict, dict] | None = None) -> None:
        """``areas``: the label areas before and after, which ``media`` was
        read from (to say where a namespace whose media changed lay)."""
        st = self.stats
        tu = target["uuid"]
        for u, ns in before.items():
            if u == tu:
                continue
            st.namespaces_checked += 1
            got = after.get(u)
            rebooted_raw = media is not None and ns["unbound_claim"] and got is not None \
                and got["mode"] == "raw"
            if got is None:
                self._violate(f"{op} {tu}: untouched namespace {u} ({ns}) is gone")
            elif (got["size"], got["region"]) != (ns["size"], ns["region"]) or \
                    (got["mode"] != ns["mode"] and not rebooted_raw):
                self._violate(f"{op} {tu}: untouched namespace {u} changed from {ns} to {got}"
                              + self._media_note(u, media0, media, areas))
            elif media is not None:
                st.bytes_compared += ns["size"]
                if media.get(u) != media0.get(u):
                    where = f" ({_ranges_of(u, *areas)})" if areas else ""
                    self._violate(f"{op} {tu}: the media of untouched namespace {u} changed{where}")
        extra = set(after) - set(before) - {tu}
        got = after.get(tu)
        if op == "reconfigure" and len(extra) == 1:
            # ndctl destroys the namespace, then creates one with a new uuid
            # (and the old name): the new one stands for the target
            new = after[extra.pop()]
            if got is not None:
                self._violate(f"reconfigure {tu}: both the old and a new namespace exist: {got}, {new}")
            got = new if new["region"] == before[tu]["region"] else {"mode": "elsewhere", **new}
        if extra:
            self._violate(f"{op} {tu}: namespaces appeared from nowhere: {sorted(extra)}")
        state = "absent" if got is None else got["mode"]
        st.outcomes[f"{op}: {state}"] += 1
        if op == "create":
            if got is not None and (got["size"] != target["size"] or got["mode"] not in (target["mode"], "raw")):
                self._violate(f"create {tu}: left {got}, wanted {target}")
            if complete and (got is None or got["mode"] != target["mode"]):
                self._violate(f"create {tu} succeeded but left {got}")
        elif op == "destroy":
            if got is not None and (got["size"] != before[tu]["size"] or
                                    got["mode"] not in (before[tu]["mode"], "raw")):
                self._violate(f"destroy {tu}: left {got}, was {before[tu]}")
            if complete and got is not None:
                self._violate(f"destroy {tu} succeeded but left {got}")
        else:
            if got is not None and (got["size"] != target["size"] or
                                    got["mode"] not in (target["mode"], target["old"], "raw")):
                self._violate(f"reconfigure {tu}: left {got}, wanted {target}")
            if complete and (got is None or got["mode"] != target["mode"]):
                self._violate(f"reconfigure {tu} succeeded but left {got}")

    @staticmethod
    def _media_note(u: str, media0: dict, media: dict | None,
                    areas: tuple[dict, dict] | None) -> str:
        """Whether a changed namespace's bytes changed too: a write that
        went astray, or a boot that judged the same bytes differently."""
        if media is None:
            return ""
        if media.get(u) == media0.get(u):
            return "; its media are unchanged"
        return "; its media changed" + (f" ({_ranges_of(u, *areas)})" if areas else "")

    def _violate(self, text: str) -> None:
        self.stats.violations.append(text)


def run(kills: int, seed: int = 1, topology: str | None = None, verbose: bool = False,
        max_rounds: int | None = None) -> CrashStats:
    from fakesys.platform.topology import default_path
    work = tempfile.mkdtemp(prefix="fakesys-crash-")
    harness = CrashHarness(topology or default_path(), work, seed)
    try:
        while harness.stats.kills < kills and (max_rounds is None or harness.stats.rounds < max_rounds):
            n = len(harness.stats.violations)
            harness.round()
            if verbose:
                print(f"  {harness.last}", file=sys.stderr)
                s = harness.stats
                print(f"round {s.rounds}: kills {s.kills} ({s.kills_mid_op} mid-op), "
                      f"violations {len(s.violations)}", file=sys.stderr)
                for v in s.violations[n:]:
                    print("  VIOLATION", v, file=sys.stderr)
    finally:
        harness.down()
        shutil.rmtree(work, ignore_errors=True)
    return harness.stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/crash", description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--topology")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    st = run(args.kills, args.seed, args.topology, args.verbose)
    print(f"rounds {st.rounds}, kills {st.kills} ({st.kills_mid_op} hit a running tool), "
          f"by operation {dict(st.by_op)}")
    print(f"reboots after a kill: {st.kills}, stale mounts cleaned {st.stale_mounts_cleaned}, "
          f"connections of a stuck daemon aborted {st.connections_aborted}")
    print(f"untouched namespaces checked {st.namespaces_checked} ({st.bytes_compared >> 20} MiB compared), "
          f"torn index blocks {st.torn_index_blocks}, labels left UPDATING {len(st.updating_labels)}")
    print("target states: " + ", ".join(f"{k} {v}" for k, v in sorted(st.outcomes.items())))
    print(f"violations {len(st.violations)}  ({time.monotonic() - t0:.0f} s)")
    for v in st.violations:
        print("  " + v)
    return 1 if st.violations else 0


if __name__ == "__main__":
    sys.exit(main())
