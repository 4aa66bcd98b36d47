"""kmem through the real daxctl: dax memory as System RAM, NUMA nodes, tiers.

``devices/qemu-kmem.toml`` is the golden kmem machine (6.1, one 1 GiB
NVDIMM whose devdax namespace becomes System RAM on node 0: blocks 33-38);
``devices/qemu-hmat.toml`` the golden hmat one (6.1, node 2 memory-only and
empty at boot; its soft-reserved 512 MiB are ``dax0.0``).  After each
daxctl step the test reads what the kernel would show: memory blocks,
node meminfo, ``/proc/meminfo`` and ``/proc/iomem`` inside ``fakesys
run``, the memory tiers, and ``numactl --hardware`` (Debian's numactl).
"""

from __future__ import annotations

import errno
import os

import pytest

from conftest import needs_ndctl, needs_numactl, needs_root

pytestmark = [needs_root, needs_ndctl]

MEM = "devices/system/memory"
NODE = "devices/system/node"
KMEM_BLOCKS = range(33, 39)                  # 0x108000000-0x137ffffff
ADDED_KB = len(KMEM_BLOCKS) * 128 * 1024


def blocks(fake, ids) -> dict[int, tuple[str, str]]:
    return {i: (fake.sys(f"{MEM}/memory{i}/state").strip(), fake.sys(f"{MEM}/memory{i}/valid_zones").strip())
            for i in ids if os.path.isdir(os.path.join(fake.mnt, "sys", MEM, f"memory{i}"))}


def node_kb(fake, nid: int, key: str = "MemTotal") -> int:
    for line in fake.sys(f"{NODE}/node{nid}/meminfo").splitlines():
        if line.split(":")[0].endswith(f" {key}"):
            return int(line.split()[-2])
    raise KeyError(key)


def proc(fake, name: str) -> str:
    return fake.run(f"cat /proc/{name}", check=True).stdout


def proc_kb(fake, key: str) -> int:
    line = next(l for l in proc(fake, "meminfo").splitlines() if l.startswith(key + ":"))
    return int(line.split()[1])


def device(fake, dev: str) -> dict:
    out = fake.json(f"daxctl list -d {dev}")
    return out[0] if isinstance(out, list) else out


def tiers(fake) -> dict[str, str]:
    base = os.path.join(fake.mnt, "sys/devices/virtual/memory_tiering")
    return {t: fake.sys(f"devices/virtual/memory_tiering/{t}/nodelist").strip()
            for t in sorted(os.listdir(base)) if t.startswith("memory_tier")}


@pytest.fixture
def kmem(fake_factory):
    fake = fake_factory("qemu-kmem.toml")
    fake.run("ndctl disable-region all && ndctl init-labels all && ndctl enable-region all"
             " && ndctl create-namespace -r region0 -m devdax", check=True)
    return fake


def test_system_ram_online_offline_and_back_to_devdax(kmem):
    total0 = node_kb(kmem, 0)
    assert kmem.sys(f"{MEM}/auto_online_blocks") == "offline\n"
    (dev,) = kmem.json("daxctl reconfigure-device --mode=system-ram dax0.0")
    assert (dev["mode"], dev["online_memblocks"], dev["total_memblocks"], dev["movable"]) == \
        ("system-ram", 6, 6, True)
    assert blocks(kmem, KMEM_BLOCKS) == {i: ("online", "Movable") for i in KMEM_BLOCKS}
    assert node_kb(kmem, 0) == total0 + ADDED_KB
    assert proc_kb(kmem, "MemTotal") == total0 + ADDED_KB
    iomem = proc(kmem, "iomem")
    assert ("100000000-13ffdffff : Persistent Memory\n  100000000-100ffffff : namespace0.0\n"
            "  108000000-137ffffff : dax0.0\n    108000000-137ffffff : System RAM (kmem)\n") in iomem
    assert os.readlink(os.path.join(kmem.mnt, "sys", NODE, "node0/memory35")) == "../../memory/memory35"

    r = kmem.run("daxctl reconfigure-device --mode=devdax dax0.0")    # memory online: refused
    assert r.returncode == 240 and "Device or resource busy" in r.stderr
    kmem.run("daxctl offline-memory dax0.0", check=True)
    d = device(kmem, "dax0.0")
    assert (d["online_memblocks"], d["total_memblocks"], "movable" in d) == (0, 6, False)
    assert blocks(kmem, KMEM_BLOCKS) == {i: ("offline", "Normal Movable") for i in KMEM_BLOCKS}
    assert node_kb(kmem, 0) == total0 and proc_kb(kmem, "MemTotal") == total0
    kmem.run("daxctl online-memory dax0.0", check=True)
    r = kmem.run("daxctl online-memory dax0.0")                       # all online already
    assert r.returncode == 1 and "all memory sections (6) already online" in r.stderr
    kmem.run("daxctl offline-memory dax0.0", check=True)
    (dev,) = kmem.json("daxctl reconfigure-device --mode=devdax dax0.0")
    assert dev["mode"] == "devdax" and blocks(kmem, KMEM_BLOCKS) == {}
    assert "System RAM (kmem)" not in proc(kmem, "iomem")
    assert "  101000000-13effffff : dax0.0\n" in proc(kmem, "iomem")
    assert node_kb(kmem, 0) == total0


def test_no_online_no_movable_and_unmovable_normal_memory(kmem):
    total0 = node_kb(kmem, 0)
    (dev,) = kmem.json("daxctl reconfigure-device --mode=system-ram --no-online dax0.0")
    assert (dev["online_memblocks"], dev["total_memblocks"]) == (0, 6)
    assert node_kb(kmem, 0) == total0
    kmem.run("daxctl online-memory --no-movable dax0.0", check=True)
    assert blocks(kmem, KMEM_BLOCKS) == {i: ("online", "Normal") for i in KMEM_BLOCKS}
    assert device(kmem, "dax0.0")["movable"] is False
    r = kmem.run("daxctl offline-memory dax0.0")                      # kernel allocations in Normal
    assert r.returncode == 240
    assert "Failed to offline /sys/devices/system/node/node0/memory37/state" in r.stderr
    r = kmem.run("daxctl reconfigure-device --mode=devdax -f dax0.0")
    assert r.returncode == 240 and device(kmem, "dax0.0")["mode"] == "system-ram"
    assert node_kb(kmem, 0) == total0 + ADDED_KB


def test_raw_memory_block_writes_and_kmem_unbind(kmem):
    """The kernel's answers to raw writes, state unchanged after each refusal;
    unbinding kmem with memory online succeeds and the range stays taken."""
    kmem.run("daxctl reconfigure-device --mode=system-ram --no-online dax0.0", check=True)
    cases = [(f"{MEM}/memory33/state", "junk\n", errno.EINVAL),
             (f"{MEM}/memory33/state", "offline\n", errno.EINVAL),   # offline already
             (f"{MEM}/memory1/state", "online\n", errno.EINVAL),     # online already
             (f"{MEM}/memory1/state", "offline\n", errno.EBUSY),     # boot memory in DMA32
             (f"{MEM}/memory0/state", "offline\n", errno.EINVAL),    # spans DMA and DMA32
             (f"{MEM}/memory15/state", "offline\n", errno.EINVAL),   # ends in a Reserved hole
             (f"{MEM}/auto_online_blocks", "always\n", errno.EINVAL)]
    before = blocks(kmem, range(64))
    for path, value, err in cases:
        with pytest.raises(OSError) as e:
            kmem.write(path, value)
        assert e.value.errno == err, (path, value)
    assert blocks(kmem, range(64)) == before
    kmem.write(f"{MEM}/memory1/online", "1\n")                        # same state via online: fine
    kmem.write(f"{MEM}/memory33/state", "online_kernel\n")
    kmem.write(f"{MEM}/memory34/online", "1\n")
    assert blocks(kmem, (33, 34)) == {33: ("online", "Normal"), 34: ("online", "Normal")}
    kmem.write("bus/dax/drivers/kmem/remove_id", "dax0.0\n")
    kmem.write("bus/dax/drivers/kmem/unbind", "dax0.0\n")             # succeeds, memory stays
    assert not os.path.exists(os.path.join(kmem.mnt, "sys/bus/dax/devices/dax0.0/driver"))
    assert blocks(kmem, (33, 34)) == {33: ("online", "Normal"), 34: ("online", "Normal")}
    assert "108000000-137ffffff : System RAM (kmem)" in proc(kmem, "iomem")
    for drv, err in (("device_dax", errno.EBUSY),   # dax0.0 (kmem's) still holds part of the range
                     ("kmem", errno.ENODEV)):       # 6.1: kmem matches new_id names only
        with pytest.raises(OSError) as e:
            kmem.write(f"bus/dax/drivers/{drv}/bind", "dax0.0\n")
        assert e.value.errno == err, drv
    kmem.write("bus/dax/drivers/kmem/new_id", "dax0.0\n")
    with pytest.raises(OSError) as e:
        kmem.write("bus/dax/drivers/kmem/bind", "dax0.0\n")
    assert e.value.errno == errno.EBUSY                               # request_mem_region fails
    r = kmem.run("daxctl enable-device dax0.0")
    assert r.returncode != 0


def test_memory_only_node_joins_a_lower_tier(fake_factory):
    """The hmat machine: dax0.0's memory makes node 2 a NUMA node in
    memory_tier22, below node 0 and 1's memory_tier4 (6.1)."""
    fake = fake_factory("qemu-hmat.toml")
    assert tiers(fake) == {"memory_tier4": "0-1"}
    assert fake.sys(f"{NODE}/online") == "0-1\n" and fake.sys(f"{NODE}/possible") == "0-2\n"
    (dev,) = fake.json("daxctl reconfigure-device --mode=system-ram dax0.0")
    assert (dev["target_node"], dev["online_memblocks"], dev["movable"]) == (2, 4, True)
    assert tiers(fake) == {"memory_tier22": "2", "memory_tier4": "0-1"}
    assert fake.sys(f"{NODE}/has_memory") == "0-2\n" and fake.sys(f"{NODE}/has_normal_memory") == "0-1\n"
    assert (node_kb(fake, 2), node_kb(fake, 2, "MemFree")) == (524288, 524288)
    assert fake.sys(f"{NODE}/node2/access0/initiators/read_latency") == "100\n"
    assert os.readlink(os.path.join(fake.mnt, "sys", NODE, "node0/access1/targets/node2")) == "../../../node2"
    fake.run("daxctl offline-memory dax0.0 && daxctl reconfigure-device --mode=devdax dax0.0", check=True)
    assert tiers(fake) == {"memory_tier4": "0-1"}
    assert fake.sys(f"{NODE}/online") == "0-1\n"
    assert not os.path.exists(os.path.join(fake.mnt, "sys", NODE, "node2"))


def numactl_hardware(fake) -> dict:
    """What ``numactl --hardware`` says: nodes, per node cpus, size and
    free (MB), and the distance rows."""
    out: dict = {"nodes": None, "cpus": {}, "size": {}, "free": {}, "distances": {}}
    for line in fake.run("numactl --hardware", check=True).stdout.splitlines():
        words = line.split()
        if line.startswith("available:"):
            out["nodes"] = words[-1].strip("()")
        elif len(words) > 2 and words[0] == "node" and words[2] in ("cpus:", "size:", "free:"):
            value = words[3:] if words[2] == "cpus:" else int(words[3])
            out[words[2].rstrip(":")][int(words[1])] = value
        elif words and words[0].endswith(":") and words[0][:-1].isdigit():
            out["distances"][int(words[0][:-1])] = [int(w) for w in words[1:]]
    return out


def sysfs_view(fake) -> dict:
    """The same, as /sys/devices/system/node gives it."""
    nodes = fake.sys(f"{NODE}/online").strip()
    ids = [int(n[4:]) for n in sorted(os.listdir(os.path.join(fake.mnt, "sys", NODE)))
           if n.startswith("node") and n[4:].isdigit()]
    cpus = {}
    for n in ids:
        listed = fake.sys(f"{NODE}/node{n}/cpulist").strip()
        cpus[n] = [str(c) for part in listed.split(",") if part
                   for c in range(int(part.split("-")[0]), int(part.split("-")[-1]) + 1)]
    return {"nodes": nodes, "cpus": cpus,
            "size": {n: node_kb(fake, n) // 1024 for n in ids},
            "free": {n: node_kb(fake, n, "MemFree") // 1024 for n in ids},
            "distances": {n: [int(d) for d in fake.sys(f"{NODE}/node{n}/distance").split()]
                          for n in ids}}


@needs_numactl
def test_numactl_hardware_agrees_with_the_nodes(fake_factory):
    """Debian's numactl reads the fake's nodes: node 2 appears when kmem
    onlines dax0.0 (512 MB, no CPUs, distance 20 from the others; node 1
    pays for its struct pages), and is gone again after devdax."""
    fake = fake_factory("qemu-hmat.toml")
    seen = [numactl_hardware(fake)]
    assert seen[0] == sysfs_view(fake) and seen[0]["nodes"] == "0-1"
    fake.run("daxctl reconfigure-device --mode=system-ram dax0.0", check=True)
    seen.append(numactl_hardware(fake))
    assert seen[1] == sysfs_view(fake) and seen[1]["nodes"] == "0-2"
    assert (seen[1]["cpus"][2], seen[1]["size"][2], seen[1]["free"][2]) == ([], 512, 512)
    assert seen[1]["distances"][2] == [20, 20, 10]
    assert seen[1]["free"][1] < seen[0]["free"][1]
    fake.run("daxctl offline-memory dax0.0 && daxctl reconfigure-device --mode=devdax dax0.0",
             check=True)
    seen.append(numactl_hardware(fake))
    assert seen[2] == sysfs_view(fake) and seen[2]["nodes"] == "0-1" and 2 not in seen[2]["size"]


def test_proc_views_are_the_machines_and_the_hosts_stay(fake_factory):
    fake = fake_factory("qemu-hmat.toml")
    with open("/proc/meminfo") as f:
        host = f.read()
    inside = proc(fake, "meminfo")
    assert inside.startswith("MemTotal:        2464648 kB\n") and inside != host
    assert "  100000000-11fffffff : Soft Reserved\n" in proc(fake, "iomem")
    assert "oracle.scenario=hmat" in proc(fake, "cmdline")
    with open("/proc/meminfo") as f:
        assert f.readline() == host.splitlines(keepends=True)[0]
