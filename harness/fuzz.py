"""Fuzzing the emulated kernel's sysfs stores, in process.

:class:`Fuzz` boots a machine and hands writes to its attributes exactly
as the FUSE server does (``File.write`` with the bytes the writer passed),
then checks, after every single write:

* the write succeeded or raised ``Errno`` with a positive errno; any other
  exception is a fault of the store (a bug);
* the invariants hold (:func:`fakesys.kernel.invariants.check`), and no
  attribute's ``show`` crashes;
* a rejected write changed nothing: every node, every attribute's content
  and the label areas are as before (:func:`snapshot`), and no media or
  label store was written -- except where the kernel itself changes
  something before a store fails (:data:`KERNEL_SIDE_EFFECTS`).

Writes go to every writable attribute under ``sys/`` that exists at that
moment (so every device type the machine has), with values chosen from
attribute-specific candidates (sizes, uuids, names of other devices, mode
words, ranges), boundary values (empty, a lone newline, 4096 and 4097
bytes, non-UTF-8, negative and 2^64-sized numbers, path-like names with
``/``, ``..`` and NUL) and random bytes.  ndctl-like create/destroy
sequences, region and DIMM disable/enable, dax device create/destroy and
reboots from the state directory are interleaved; their writes are
checked the same way.

The value choices come from a ``Chooser``: :class:`RandomChooser` (a
seeded ``random.Random``, for the long harness ``scripts/fuzz``) or a
hypothesis ``data`` object (``tests/test_fuzz.py``, derandomized).
"""

from __future__ import annotations

import collections
import errno
import os
import random
import traceback
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Protocol, Sequence

from fakesys.errors import Errno
from fakesys.kernel.dax.invariants import dax_regions
from fakesys.kernel.invariants import check, diff, snapshot
from fakesys.platform.machine import Machine
from fakesys.sysfs.tree import Dir, File, Node
from fakesys.platform.topology import load

MiB = 1 << 20
GiB = 1 << 30

#: values every attribute gets tried with
BOUNDARY: list[bytes] = [
    b"", b"\n", b"\0", b" ", b"\n\n", b"\t", b"0", b"1", b"2", b"-1", b"-0", b"+1", b"0x", b"0x0",
    b"-9223372036854775808", b"18446744073709551615", b"18446744073709551616",
    b"0xffffffffffffffff", b"0x10000000000000000", b"9" * 40, b"-" + b"9" * 40, b"1e9", b"0b101",
    b" 1", b"1 ", b"1\n\n", b"x" * 4095 + b"\n", b"x" * 4096, b"x" * 4097, b"\xff\xfe\xfd",
    b"\xc3\x28", "\u00e9\u4e2d".encode(), b"\xed\xa0\x80", b"../../../../tmp/fakesys-escape",
    b"a/b", b"..", b".", b"/", b"/etc/passwd\n", b"name\0with-nul", b"%s%n%x", b"y", b"N", b"on",
    b"off", b"00000000-0000-0000-0000-000000000000", b"not-a-uuid", b"6bfa5b2f-3b0c\n",
]

SIZES = [0, 4096, 12345, 2 * MiB, 16 * MiB, 32 * MiB, 48 * MiB, 64 * MiB, 256 * MiB, GiB,
         2 * GiB, 4 * GiB, 8 * GiB, (1 << 64) - 1 - 0xFFFFFF]
BOOLS = [b"0", b"1", b"y", b"n", b"Y\n", b"N\n", b"on", b"off", b"true", b"false", b"2", b"o", b""]


class Chooser(Protocol):
    def choice(self, options: Sequence): ...

    def randint(self, a: int, b: int) -> int: ...

    def randbytes(self, n: int) -> bytes: ...


class RandomChooser:
    """A seeded random source with the Chooser interface."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def choice(self, options: Sequence):
        return options[self.rng.randrange(len(options))]

    def randint(self, a: int, b: int) -> int:
        return self.rng.randint(a, b)

    def randbytes(self, n: int) -> bytes:
        return self.rng.randbytes(n)


class HypothesisChooser:
    """The Chooser interface over a hypothesis ``data`` object."""

    def __init__(self, data) -> None:
        from hypothesis import strategies as st
        self.data = data
        self.st = st

    def choice(self, options: Sequence):
        return self.data.draw(self.st.sampled_from(list(options)))

    def randint(self, a: int, b: int) -> int:
        return self.data.draw(self.st.integers(a, b))

    def randbytes(self, n: int) -> bytes:
        return self.data.draw(self.st.binary(min_size=n, max_size=n))


@dataclass
class Stats:
    writes: int = 0
    accepted: int = 0
    rejected: collections.Counter = field(default_factory=collections.Counter)  # errno name -> n
    attributes: collections.Counter = field(default_factory=collections.Counter)  # attr name -> n
    ops: collections.Counter = field(default_factory=collections.Counter)
    side_effects: collections.Counter = field(default_factory=collections.Counter)
    reboots: int = 0

    def merge(self, other: "Stats") -> None:
        self.writes += other.writes
        self.accepted += other.accepted
        self.rejected.update(other.rejected)
        self.attributes.update(other.attributes)
        self.ops.update(other.ops)
        self.side_effects.update(other.side_effects)
        self.reboots += other.reboots


class Violation(AssertionError):
    pass


def _is_claim_path(path: str) -> bool:
    base = path.rsplit("/", 1)[-1]
    return base.startswith(("btt", "pfn", "dax")) and "." in base


def _under_claim(path: str) -> bool:
    """``path`` is (inside) the directory of a btt/pfn/dax device."""
    parts = path.split("/")
    return any(_is_claim_path(p) for p in parts)


def _new_devices(before: dict, after: dict) -> set[str]:
    """Directories that appeared (device kobjects: '.../regionN/pfnN.M')."""
    return {k for k, v in after.items() if k not in before and isinstance(v, tuple) and v[0] == "dir"}


def kernel_side_effect(path: str, data: bytes, err: int, before: dict, after: dict,
                       media: list) -> str | None:
    """Why a rejected write may have changed something, or None.

    The kernel's own stores are not all transactional; where fakesys
    mirrors such a store, the change is allowed here with the reason:

    * binding a namespace that holds a btt/pfn/dax info block: nd_pmem's
      probe registers a claim device for it (nd_btt_probe, nd_pfn_probe,
      nd_dax_probe) and then fails with ENXIO so that the claim binds
      instead; the new claim device (and its disk, when it probes) stays.
    """
    name = path.rsplit("/", 1)[-1]
    if name in ("bind", "drivers_probe") and err == errno.ENXIO:
        added = _new_devices(before, after)
        # the new directories are the claim's (and its disk's, below it)
        if added and any(_is_claim_path(d) for d in added) and all(_under_claim(d) for d in added):
            return "namespace with an info block: the probe registered its claim device"
    return None


#: the reasons kernel_side_effect() accepts, for reports
KERNEL_SIDE_EFFECTS = [
    "namespace with an info block: the probe registered its claim device",
]


class Fuzz:
    """One fuzzed machine.  ``strict`` raises :class:`Violation` at the first
    problem (for hypothesis to shrink); otherwise problems are collected in
    ``violations`` and the run goes on."""

    def __init__(self, topology: str, state_dir: str | None = None, strict: bool = True,
                 history: int = 40) -> None:
        self.topology_path = topology
        self.topology = load(topology)
        self.state_dir = state_dir
        self.strict = strict
        self.stats = Stats()
        self.violations: list[str] = []
        self.history: collections.deque = collections.deque(maxlen=history)
        self._media: list[tuple[str, int, int]] = []
        self._seen: set[str] = set()
        self._boot()

    # -- machine --------------------------------------------------------------------

    def _boot(self) -> None:
        self.machine = Machine(self.topology, self.state_dir)
        self.kernel = self.machine.kernel
        for store in self.machine.stores:
            self._instrument(store)
        self._snap = snapshot(self.kernel)
        self._problems(check(self.kernel), "boot")

    def _instrument(self, store) -> None:
        inner = store.write
        name = getattr(store, "path", None) or f"store@{id(store):x}"

        def write(offset: int, data: bytes) -> None:
            self._media.append((os.path.basename(name), offset, len(data)))
            return inner(offset, data)
        store.write = write

    def reboot(self) -> None:
        """Flush, boot a new machine from the state directory, and check that
        every namespace with capacity came back (uuid, size, name)."""
        if not self.state_dir:
            return
        before = self.namespaces()
        enabled = set(self.regions(labelled=None))
        self.machine.flush()
        self._boot()
        self.stats.reboots += 1
        # a region disabled before comes back enabled with namespaces then unseen
        after = {ns for ns in self.namespaces() if ns[0] in enabled}
        if before != after:
            self._violate(f"reboot lost or changed namespaces: lost {sorted(before - after)}, "
                          f"found {sorted(after - before)}")

    def namespaces(self) -> set[tuple]:
        from fakesys.kernel.nvdimm.namespace import NamespacePmem
        out = set()
        for bus in self.kernel.nd.bus.devices.values():
            for region in getattr(bus, "regions", lambda: [])():
                if region.driver is None:
                    continue  # a disabled region's namespaces are in its labels only
                for ns in region.namespaces():
                    if isinstance(ns, NamespacePmem) and ns.capacity and ns.uuid is not None:
                        out.add((region.name, str(ns.uuid), ns.capacity, ns.alt_name))
        return out

    # -- problems --------------------------------------------------------------------

    def _violate(self, message: str) -> None:
        steps = "\n  ".join(self.history)
        text = f"{message}\n  last steps:\n  {steps}" if steps else message
        self.violations.append(text)
        if self.strict:
            raise Violation(text)

    def _problems(self, problems: list[str], where: str) -> None:
        fresh = [p for p in problems if p not in self._seen]
        self._seen.update(problems)
        if fresh:
            self._violate(f"after {where}: invariants broken: {fresh}")

    # -- the tree --------------------------------------------------------------------

    def resolve(self, path: str) -> Node | None:
        """Walk a path from the root following links, like the VFS."""
        return self.kernel.tree.root.resolve(path)

    def read(self, path: str) -> str:
        node = self.resolve(path)
        if not isinstance(node, File):
            return ""
        try:
            return node.read().decode(errors="replace")
        except Errno:
            return ""

    def writable(self) -> list[str]:
        """Paths of every attribute under sys/ that has a write bit, sorted."""
        out = []
        stack: list[Node] = [self.kernel.sys]
        while stack:
            node = stack.pop()
            if isinstance(node, Dir):
                stack.extend(node.children.values())
            elif isinstance(node, File) and node.mode & 0o222:
                out.append(node.path())
        return sorted(out)

    def device_names(self) -> list[str]:
        names = set()
        for bus in self.kernel.buses.values():
            names.update(bus.devices)
            names.update(bus.drivers)
        return sorted(names)

    # -- one write --------------------------------------------------------------------

    def write(self, path: str, data: bytes, why: str = "write") -> int:
        """Write ``data`` to the attribute at ``path`` (a real path or one
        through links); returns 0 or the errno.  Checks everything."""
        node = self.kernel.tree.root.walk(path)
        if not isinstance(node, File):
            node = self.resolve(path)
        if not isinstance(node, File):
            return errno.ENOENT
        real = node.path()
        self.history.append(f"{why}: {real} <- {data[:60]!r}{'...' if len(data) > 60 else ''}")
        self.stats.writes += 1
        self.stats.attributes[real.rsplit("/", 1)[-1]] += 1
        before = self._snap
        self._media.clear()
        err = 0
        try:
            node.write(data)
        except Errno as e:
            err = e.errno
            if not isinstance(err, int) or err <= 0:
                self._violate(f"{real}: rejected with a bad errno {err!r}")
                err = errno.EIO
        except Exception as e:
            self._violate(f"{real} <- {data[:60]!r}: the store crashed: {type(e).__name__}: {e}\n"
                          + traceback.format_exc(limit=-4))
            err = -1
        after = snapshot(self.kernel)
        self._snap = after
        faults = sorted(k for k, v in after.items()
                        if isinstance(v, tuple) and len(v) == 3 and isinstance(v[2], tuple)
                        and v[2][0] == "fault")
        new_faults = [f for f in faults if f"fault {f}" not in self._seen]
        if new_faults:
            self._seen.update(f"fault {f}" for f in new_faults)
            self._violate(f"after {real} <- {data[:60]!r}: show crashed for {new_faults[:5]}")
        if err > 0:
            self.stats.rejected[errno.errorcode.get(err, str(err))] += 1
            if after != before or self._media:
                reason = kernel_side_effect(real, data, err, before, after, self._media)
                if reason:
                    self.stats.side_effects[reason] += 1
                else:
                    changes = diff(before, after)
                    if self._media:
                        changes.append(f"media written: {self._media[:4]}")
                    self._violate(f"{real} <- {data[:60]!r} failed with "
                                  f"{errno.errorcode.get(err, err)} but changed: {changes}")
        elif err == 0:
            self.stats.accepted += 1
        self._problems(check(self.kernel), f"{real} <- {data[:60]!r}")
        return err

    # -- values ----------------------------------------------------------------------

    def value(self, path: str, ch: Chooser) -> bytes:
        kind = ch.randint(0, 9)
        if kind <= 5:
            cands = self.candidates(path)
            if cands:
                return ch.choice(cands)
        if kind <= 8:
            if ch.randint(0, 1):
                return ch.choice(BOUNDARY)
            names = self.device_names()
            return (ch.choice(names) + ch.choice(["", "\n", "\0junk", "/..", " "])).encode()
        return ch.randbytes(ch.randint(0, 48))

    def _uuids(self) -> list[str]:
        out = []
        for bus in self.kernel.buses.values():
            for dev in bus.devices.values():
                u = getattr(dev, "uuid", None)
                if isinstance(u, uuidlib.UUID):
                    out.append(str(u))
        return sorted(out)

    def _region_of(self, path: str):
        for part in path.split("/"):
            if part.startswith("region") and part[6:].isdigit():
                return part
        return None

    def candidates(self, path: str) -> list[bytes]:
        """Attribute-specific values worth trying for ``path``."""
        name = path.rsplit("/", 1)[-1]
        dirname = path.rsplit("/", 2)[-2] if path.count("/") else ""
        fresh = str(uuidlib.UUID(int=random.Random(len(path) + self.stats.writes).getrandbits(128), version=4))
        devnames = self.device_names()
        nl = ["", "\n"]
        if name in ("bind", "unbind", "drivers_probe"):
            return [(n + e).encode() for n in devnames for e in nl] + [b"", b"\n", b"nonesuch\n"]
        if name == "size":
            return [f"{s}{e}".encode() for s in SIZES for e in nl] + \
                   [hex(s).encode() for s in SIZES] + [b"-16777216", b"0x1000000\n"]
        if name == "uuid":
            return [fresh.encode(), (fresh + "\n").encode(), fresh.upper().encode(),
                    fresh.replace("-", "").encode(), fresh.replace("-", ":").encode(),
                    (fresh[:-2] + "\n").encode(), b"\n"] + \
                   [(u + "\n").encode() for u in self._uuids()]
        if name == "alt_name":
            return [b"", b"\n", b"fuzz", b"fuzz\n", b"n" * 63, b"n" * 64, b"a/b", b"../x",
                    b"\xff\xfe", b"tab\tname", b"nul\0name"]
        if name == "sector_size":
            return [f"{s}{e}".encode() for s in (512, 520, 528, 4096, 4104, 4160, 0, 1) for e in nl]
        if name == "holder_class":
            return [f"{s}{e}".encode() for s in ("", "btt", "btt2", "pfn", "dax", "raw", "pfn ")
                    for e in nl]
        if name == "mode":
            return [f"{s}{e}".encode() for s in ("pmem", "ram", "none", "p", "r", "n", "", "memory",
                                                 "fsdax", "pmemx") for e in nl]
        if name == "align":
            return [f"{a}{e}".encode() for a in (4096, 65536, 2 * MiB, 16 * MiB, GiB, 0x3000, 0x800, 0,
                                                 8 * MiB, 4 * GiB) for e in nl] + \
                   [hex(a).encode() for a in (0x1000, 0x200000, 0x1000000, 0x2000000)]
        if name == "namespace":
            region = self._region_of(path)
            ns = [n for n in devnames if n.startswith("namespace")]
            own = [n for n in ns if region and n.startswith(f"namespace{region[6:]}.")]
            return [(n + e).encode() for n in own + ns for e in nl] + [b"", b"\n", b"namespace9.9\n",
                                                                        b"region0\n"]
        if name in ("force_raw", "read_only", "deep_flush", "memmap_on_memory", "drivers_autoprobe",
                    "region_idle", "force_enable_dimms", "no_init_ars", "async", "control"):
            return list(BOOLS) + [b"auto", b"on\n"]
        if name == "create":
            return [b"1", b"1\n", b"0", b"2", b"-1", b""]
        if name in ("delete", "new_id", "remove_id"):
            dax = [n for n in devnames if n.startswith("dax")]
            return [(n + e).encode() for n in dax for e in nl] + [b"dax-1.0", b"dax0.99999999999",
                                                                   b"dax0.0x", b"dax"]
        if name == "mapping":
            out = [b"0-1fffff", b"-", b"x-y", b"100000000-1000fffff"]
            for region in dax_regions(self.kernel):
                for off in (0, 2 * MiB, 4 * MiB, region.size - 2 * MiB):
                    start = region.start + off
                    out.append(f"{start:x}-{start + 2 * MiB - 1:x}".encode())
                    out.append(f"{start:x}-{start + 4096 - 1:x}\n".encode())
            return out
        if name == "driver_override":
            drivers = sorted({d for b in self.kernel.buses.values() for d in b.drivers})
            return [(d + e).encode() for d in drivers for e in nl] + [b"", b"\n", b"x" * 4000]
        if name == "uevent":
            return [b"add", b"change\n", b"remove", b"online", b"bogus", b"add 1234 X=1", b""]
        if name in ("hw_error_scrub", "scrub"):
            return [b"0", b"1", b"2", b"-1", b"1\n"]
        if dirname == "queue" or name in ("write_cache", "badblocks"):
            return [b"0", b"1", b"write back", b"write through", b"4096", b"1 8", b"-1", b"1024"]
        return []

    # -- composite operations (what ndctl/daxctl write) -----------------------------------

    def regions(self, labelled: bool | None = True, enabled: bool | None = True) -> list[str]:
        from fakesys.kernel.nvdimm.bus import ND_DEVICE_NAMESPACE_PMEM
        out = []
        for bus in self.kernel.nd.bus.devices.values():
            for r in getattr(bus, "regions", lambda: [])():
                if enabled is not None and (r.driver is not None) != enabled:
                    continue
                if labelled is not None and (r.nstype() == ND_DEVICE_NAMESPACE_PMEM) != labelled:
                    continue
                out.append(r.name)
        return sorted(out)

    def active_namespaces(self) -> list[str]:
        from fakesys.kernel.nvdimm.namespace import NamespacePmem
        out = []
        for bus in self.kernel.nd.bus.devices.values():
            for r in getattr(bus, "regions", lambda: [])():
                out += [ns.name for ns in r.namespaces() if isinstance(ns, NamespacePmem) and ns.capacity]
        return sorted(out)

    def create(self, region: str, mode: str, size: int, ch: Chooser) -> bool:
        """ndctl create-namespace's writes, stopping (and rolling back the
        size, as ndctl does) at the first failure."""
        self.stats.ops[f"create-{mode}"] += 1
        base = f"sys/bus/nd/devices/{region}"
        seed = self.read(f"{base}/namespace_seed").strip()
        if not seed:
            return False
        ns = f"sys/bus/nd/devices/{seed}"
        steps = [(f"{ns}/uuid", str(uuidlib.UUID(int=ch.randint(0, (1 << 128) - 1), version=4))),
                 (f"{ns}/alt_name", ch.choice(["", "fuzz", "n" * 63])),
                 (f"{ns}/size", str(size)),
                 (f"{ns}/sector_size", ch.choice(["512", "4096"]) if mode != "sector" else "4096"),
                 (f"{ns}/holder_class", {"raw": "", "fsdax": "pfn", "devdax": "dax", "sector": "btt"}[mode])]
        for path, value in steps:
            if self.write(path, value.encode() + b"\n", f"create {region} {mode}"):
                self.write(f"{ns}/size", b"0\n", "create rollback")
                return False
        if mode == "raw":
            return self.write("sys/bus/nd/drivers/nd_pmem/bind", seed.encode() + b"\n", "create raw") == 0
        kind = {"fsdax": "pfn", "devdax": "dax", "sector": "btt"}[mode]
        claim = self.read(f"{base}/{kind}_seed").strip()
        if not claim:
            return False
        cbase = f"sys/bus/nd/devices/{claim}"
        cuuid = str(uuidlib.UUID(int=ch.randint(0, (1 << 128) - 1), version=4))
        if kind == "btt":
            steps = [(f"{cbase}/uuid", cuuid), (f"{cbase}/sector_size", "4096"),
                     (f"{cbase}/namespace", seed)]
        else:
            steps = [(f"{cbase}/uuid", cuuid), (f"{cbase}/mode", "pmem"),
                     (f"{cbase}/align", ch.choice(["4096", "2097152"])), (f"{cbase}/namespace", seed)]
        for path, value in steps:
            if self.write(path, value.encode() + b"\n", f"create {region} {mode}"):
                self.write(f"{cbase}/namespace", b"\n", "create rollback")
                self.write(f"{ns}/size", b"0\n", "create rollback")
                return False
        drv = "dax_pmem" if kind == "dax" else "nd_pmem"
        if self.write(f"sys/bus/nd/drivers/{drv}/bind", claim.encode() + b"\n", f"create {region} {mode}"):
            self.write(f"{cbase}/namespace", b"\n", "create rollback")
            self.write(f"{ns}/size", b"0\n", "create rollback")
            return False
        return True

    def destroy(self, ns: str) -> None:
        """ndctl destroy-namespace -f: disable the claim or namespace,
        release the claim, size 0."""
        self.stats.ops["destroy"] += 1
        base = f"sys/bus/nd/devices/{ns}"
        holder = self.read(f"{base}/holder").strip()
        if holder:
            node = self.resolve(f"sys/bus/nd/devices/{holder}/driver")
            if isinstance(node, Dir):
                self.write(f"sys/bus/nd/drivers/{node.name}/unbind", holder.encode() + b"\n", f"destroy {ns}")
            self.write(f"sys/bus/nd/devices/{holder}/namespace", b"\n", f"destroy {ns}")
        if isinstance(self.resolve(f"{base}/driver"), Dir):
            self.write("sys/bus/nd/drivers/nd_pmem/unbind", ns.encode() + b"\n", f"destroy {ns}")
        self.write(f"{base}/size", b"0\n", f"destroy {ns}")

    def toggle_region(self, region: str) -> None:
        self.stats.ops["region-toggle"] += 1
        bound = isinstance(self.resolve(f"sys/bus/nd/devices/{region}/driver"), Dir)
        action = "unbind" if bound else "bind"
        self.write(f"sys/bus/nd/drivers/nd_region/{action}", region.encode() + b"\n", f"{action} {region}")

    def toggle_dimm(self, dimm: str) -> None:
        self.stats.ops["dimm-toggle"] += 1
        bound = isinstance(self.resolve(f"sys/bus/nd/devices/{dimm}/driver"), Dir)
        action = "unbind" if bound else "bind"
        self.write(f"sys/bus/nd/drivers/nvdimm/{action}", dimm.encode() + b"\n", f"{action} {dimm}")

    def dax_create(self, ch: Chooser) -> None:
        """daxctl create-device: create, size, bind device_dax."""
        regions = [r for r in dax_regions(self.kernel) if not r.static and r.host.kobj is not None]
        if not regions:
            return
        self.stats.ops["dax-create"] += 1
        region = ch.choice(regions)
        host = region.host.kobj.path()
        if self.write(f"{host}/dax_region/create", b"1\n", "daxctl create-device"):
            return
        dev = self.read(f"{host}/dax_region/seed").strip() or self.read(f"{host}/dax_region/create").strip()
        if not dev:
            return
        size = ch.choice([2 * MiB, 16 * MiB, 64 * MiB, 128 * MiB])
        if self.write(f"{host}/{dev}/size", str(size).encode(), "daxctl create-device"):
            return
        self.write("sys/bus/dax/drivers/device_dax/bind", dev.encode() + b"\n", "daxctl create-device")

    def dax_destroy(self, ch: Chooser) -> None:
        """daxctl disable-device + destroy-device: unbind, size 0, delete."""
        devs = [d for r in dax_regions(self.kernel) if not r.static and r.host.kobj is not None
                for d in r.devices if d.registered and d.id > 0]
        if not devs:
            return
        self.stats.ops["dax-destroy"] += 1
        dev = ch.choice(sorted(devs, key=lambda d: d.name))
        host = dev.region.host.kobj.path()
        if dev.driver is not None:
            self.write(f"sys/bus/dax/drivers/{dev.driver.name}/unbind", dev.name.encode() + b"\n",
                       "daxctl disable-device")
        self.write(f"{host}/{dev.name}/size", b"0", "daxctl destroy-device")
        self.write(f"{host}/dax_region/delete", dev.name.encode() + b"\n", "daxctl destroy-device")

    # -- one random step ------------------------------------------------------------------

    def step(self, ch: Chooser) -> None:
        """A random write (mostly) or composite operation."""
        what = ch.randint(0, 99)
        if what < 70:
            path = ch.choice(self.writable())
            self.write(path, self.value(path, ch))
        elif what < 82:
            regions = self.regions()
            if regions:
                mode = ch.choice(["raw", "fsdax", "devdax", "sector"])
                self.create(ch.choice(regions), mode, ch.choice([16 * MiB, 32 * MiB, 64 * MiB, 256 * MiB]), ch)
        elif what < 90:
            active = self.active_namespaces()
            if active:
                self.destroy(ch.choice(active))
        elif what < 93:
            regions = self.regions(labelled=None, enabled=None)
            if regions:
                self.toggle_region(ch.choice(regions))
        elif what < 94:
            dimms = sorted(d.name for b in self.kernel.nd.bus.devices.values()
                           for d in getattr(b, "nvdimms", lambda: [])())
            if dimms:
                self.toggle_dimm(ch.choice(dimms))
        elif what < 97:
            self.dax_create(ch)
        elif what < 99:
            self.dax_destroy(ch)
        else:
            self.reboot()


# -- the harness (scripts/fuzz) -------------------------------------------------------


def _run_seed(args: tuple) -> tuple[Stats, list[str], float]:
    import tempfile
    import time
    topology, seed, writes = args
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fakesys-fuzz-") as tmp:
        fz = Fuzz(topology, os.path.join(tmp, "state"), strict=False)
        ch = RandomChooser(seed)
        while fz.stats.writes < writes:
            fz.step(ch)
    return fz.stats, fz.violations, time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    import argparse
    import multiprocessing
    import time
    from fakesys.platform.topology import default_path
    p = argparse.ArgumentParser(prog="scripts/fuzz", description="Fuzz the sysfs stores: in process "
                                "on the model, then through a live mount with the real tools.")
    p.add_argument("--writes", type=int, default=10_000, help="in-process writes in all (default 10000)")
    p.add_argument("--seeds", type=int, default=8, help="independent machines (seeds 1..N)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--fuse-steps", type=int, default=300, help="steps through the mount (0: none)")
    p.add_argument("--topology", default=None)
    args = p.parse_args(argv)
    topology = args.topology or default_path()
    total, violations = Stats(), []
    t0 = time.monotonic()
    per_seed = -(-args.writes // args.seeds)
    with multiprocessing.Pool(args.jobs) as pool:
        for stats, found, secs in pool.imap_unordered(
                _run_seed, [(topology, seed, per_seed) for seed in range(1, args.seeds + 1)]):
            total.merge(stats)
            violations += found
    secs = time.monotonic() - t0
    print(f"in process: {total.writes} writes to {len(total.attributes)} attribute names "
          f"({total.accepted} accepted, {sum(total.rejected.values())} rejected), "
          f"{sum(total.ops.values())} composite operations, {total.reboots} reboots, "
          f"{args.seeds} seeds, {secs:.0f} s")
    print("  rejected: " + ", ".join(f"{k} {v}" for k, v in total.rejected.most_common()))
    print("  operations: " + ", ".join(f"{k} {v}" for k, v in sorted(total.ops.items())))
    if total.side_effects:
        print("  kernel side effects allowed: " + ", ".join(f"{k}: {v}" for k, v in total.side_effects.items()))
    print(f"  violations {len(violations)}")
    for v in violations:
        print("  " + v.replace("\n", "\n  "))
    fuse_violations = 0
    if args.fuse_steps:
        fuse_violations = _fuse_phase(topology, args.fuse_steps)
    return 1 if violations or fuse_violations else 0


def _fuse_phase(topology: str, steps: int) -> int:
    import shutil
    import subprocess
    import sys
    import tempfile
    import time
    from fakesys import runtime
    from harness.fusefuzz import FuseFuzz
    if os.getuid() != 0:
        print("through the mount: skipped (needs root for the tools' namespaces)")
        return 0
    work = tempfile.mkdtemp(prefix="fakesys-fusefuzz-")
    name = f"fuzz-{os.getpid()}"
    cli = [sys.executable, "-m", "fakesys.cli"]
    subprocess.run(cli + ["up", topology, "--name", name, "--state", os.path.join(work, "state")],
                   check=True, capture_output=True)
    t0 = time.monotonic()
    ff = None
    try:
        ff = FuseFuzz(name, seed=1)
        for i in range(steps):
            ff.step()
            if i % 50 == 49:
                ff.verify_cache()
        ff.verify_cache()
    except AssertionError:
        pass
    finally:
        subprocess.run(cli + ["down", "--name", name], capture_output=True)
        shutil.rmtree(runtime.rundir(name), ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    st = ff.stats if ff else None
    if st is not None:
        print(f"through the mount: {st.writes} writes ({st.accepted} accepted, "
              f"{sum(st.rejected.values())} rejected), {sum(st.commands.values())} ndctl/daxctl runs, "
              f"{st.cache_checks} page-cache checks, {time.monotonic() - t0:.0f} s")
        print("  rejected: " + ", ".join(f"{k} {v}" for k, v in st.rejected.most_common()))
        print("  tools: " + ", ".join(f"{k} {v}" for k, v in sorted(st.commands.items())))
    found = ff.violations if ff else ["the FUSE phase did not start"]
    print(f"  violations {len(found)}")
    for v in found:
        print("  " + v.replace("\n", "\n  "))
    return len(found)


if __name__ == "__main__":
    import sys
    sys.exit(main())
