"""Memory blocks, nodes, memory tiers, HMAT and kmem in-process (no FUSE).

The machines are the golden ones: ``devices/qemu-kmem.toml`` (6.1, 2 GiB
on node 0, one NVDIMM), ``devices/qemu-hmat.toml`` (6.1, nodes 0-2 with
HMAT data; node 2 has no memory at boot, its 512 MiB are soft-reserved
``dax0.0``, node 1's first 512 MiB are ``dax1.0``).  Writes go to the
attributes the way daxctl and scripts write them (value, then a NUL);
a refused write must raise the kernel's errno and change nothing.
"""

from __future__ import annotations

import errno
import os

from fakesys.kernel.mm.memory_tiers import MEMTIER_ADISTANCE_DRAM
from fakesys.platform.machine import Machine
from fakesys.platform.topology import load, parse
from test_model import exists, read, refused, resolve, write

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEM = "devices/system/memory"
NODE = "devices/system/node"
TIERS = "devices/virtual/memory_tiering"
MiB = 1 << 20


def machine(name: str, kernel: str | None = None) -> Machine:
    path = os.path.join(ROOT, "devices", name)
    if kernel is None:
        return Machine(load(path))
    text = open(path).read().replace('kernel = "6.1"', f'kernel = "{kernel}"')
    return Machine(parse(text, path))


def blocks(m: Machine) -> dict[int, tuple[str, str]]:
    return {i: (read(m, f"{MEM}/memory{i}/state").strip(), read(m, f"{MEM}/memory{i}/valid_zones").strip())
            for i in sorted(m.kernel.memory.blocks)}


def meminfo(m: Machine, nid: int) -> dict[str, int]:
    out = {}
    for line in read(m, f"{NODE}/node{nid}/meminfo").splitlines():
        key, value = line.split(":")
        out[key.split()[-1]] = int(value.split()[0])
    return out


def proc_meminfo(m: Machine) -> dict[str, int]:
    text = m.kernel.proc.get("meminfo").read().decode()
    return {line.split(":")[0]: int(line.split(":")[1].split()[0]) for line in text.splitlines()}


def tiers(m: Machine) -> dict[str, str]:
    root = resolve(m, TIERS)
    return {name: read(m, f"{TIERS}/{name}/nodelist").strip()
            for name in root.children if name.startswith("memory_tier")}


def to_kmem(m: Machine, dev: str) -> None:
    """What daxctl reconfigure-device --mode=system-ram --no-online writes on 6.1."""
    write(m, "bus/dax/drivers/device_dax/remove_id", dev)
    write(m, "bus/dax/drivers/device_dax/unbind", dev)
    write(m, "bus/dax/drivers/kmem/new_id", dev)


def test_boot_blocks_zones_and_nodes():
    m = machine("qemu-kmem.toml")
    assert read(m, f"{MEM}/block_size_bytes") == "8000000\n"
    assert read(m, f"{MEM}/auto_online_blocks") == "offline\n"
    b = blocks(m)
    assert sorted(b) == list(range(16))
    assert b[0] == ("online", "none")                    # DMA and DMA32
    assert all(b[i] == ("online", "DMA32") for i in range(1, 16))
    assert read(m, f"{MEM}/memory10/phys_index") == "0000000a\n"
    assert read(m, f"{MEM}/memory10/online") == "1\n"
    assert resolve(m, f"{MEM}/memory10/node0") is resolve(m, f"{NODE}/node0")
    assert resolve(m, f"{NODE}/node0/memory10") is resolve(m, f"{MEM}/memory10")
    for mask in ("possible", "online", "has_memory", "has_normal_memory", "has_cpu"):
        assert read(m, f"{NODE}/{mask}") == "0\n"
    assert read(m, f"{NODE}/has_generic_initiator") == "\n"
    assert (read(m, f"{NODE}/node0/cpulist"), read(m, f"{NODE}/node0/cpumap")) == ("0-1\n", "3\n")
    assert read(m, f"{NODE}/node0/distance") == "10\n"
    assert tiers(m) == {"memory_tier4": "0"}
    assert meminfo(m, 0)["MemTotal"] == proc_meminfo(m)["MemTotal"] == 1945824


def test_state_writes_on_boot_memory():
    """Junk and the current state are EINVAL; a block spanning zones or with
    holes cannot go offline (EINVAL), one in a kernel zone holds unmovable
    pages (EBUSY); ``online`` takes the current state as a success."""
    m = machine("qemu-kmem.toml")
    before = blocks(m)
    cases = [
        ("memory1/state", "bogus\n", errno.EINVAL),
        ("memory1/state", "", errno.EINVAL),
        ("memory1/state", "online_movable\n", errno.EINVAL),    # online already
        ("memory1/state", "online\n", errno.EINVAL),
        ("memory0/state", "offline\n", errno.EINVAL),           # DMA + DMA32: no single zone
        ("memory15/state", "offline\n", errno.EINVAL),          # 0x7ffdf000- is Reserved: holes
        ("memory1/state", "offline\n", errno.EBUSY),            # DMA32: unmovable pages
        ("memory1/online", "0\n", errno.EBUSY),
        ("memory1/online", "maybe\n", errno.EINVAL),
        ("auto_online_blocks", "sometimes\n", errno.EINVAL),
    ]
    for path, value, err in cases:
        assert refused(m, f"{MEM}/{path}", value) == err, (path, value)
    write(m, f"{MEM}/memory1/online", "1\n")                    # same state: fine
    assert blocks(m) == before
    assert read(m, f"{MEM}/auto_online_blocks") == "offline\n"
    assert proc_meminfo(m)["MemTotal"] == 1945824


def test_kmem_on_a_memory_only_node_tiers_and_hmat():
    """dax0.0 (node 2, no memory at boot) through kmem: the node comes online
    with its blocks offline, joins has_memory and memory_tier22 once they are
    online, and gets its HMAT access classes and caches; removing the memory
    takes the node away, leaving the initiator's link to it (6.1), and
    adding it again brings the node back without its HMAT attributes."""
    m = machine("qemu-hmat.toml")
    assert read(m, f"{NODE}/online") == "0-1\n" and read(m, f"{NODE}/possible") == "0-2\n"
    assert tiers(m) == {"memory_tier4": "0-1"}
    assert read(m, f"{NODE}/node0/distance") == "10 20\n"
    assert sorted(resolve(m, f"{NODE}/node0/access0/targets").children) == ["node0", "node1"]
    to_kmem(m, "dax0.0")
    assert read(m, f"{NODE}/online") == "0-2\n" and read(m, f"{NODE}/has_memory") == "0-1\n"
    assert [b for b in blocks(m).items() if b[0] >= 32] == [
        (i, ("offline", "Normal Movable")) for i in range(32, 36)]
    assert meminfo(m, 2)["MemTotal"] == 0
    assert not exists(m, f"{NODE}/node2/access0")             # registered when memory goes online
    node1_free = meminfo(m, 1)["MemFree"]
    for i in range(32, 36):
        write(m, f"{NODE}/node2/memory{i}/state", "online_movable")
    assert (meminfo(m, 2)["MemTotal"], meminfo(m, 2)["MemFree"]) == (524288, 524288)
    assert meminfo(m, 1)["MemFree"] == node1_free              # memmap came from node 1 at add time
    assert read(m, f"{NODE}/has_memory") == "0-2\n" and read(m, f"{NODE}/has_normal_memory") == "0-1\n"
    assert tiers(m) == {"memory_tier4": "0-1", "memory_tier22": "2"}
    assert read(m, f"{NODE}/node2/access1/initiators/read_latency") == "100\n"
    assert read(m, f"{NODE}/node2/memory_side_cache/index2/size") == f"{64 * MiB}\n"
    assert read(m, f"{NODE}/node0/distance") == "10 20 20\n"
    assert "100000000-11fffffff : System RAM (kmem)" in m.kernel.proc.get("iomem").read().decode()
    for i in range(32, 36):
        write(m, f"{MEM}/memory{i}/state", "offline")
    assert tiers(m) == {"memory_tier4": "0-1"} and read(m, f"{NODE}/has_memory") == "0-1\n"
    write(m, "bus/dax/drivers/kmem/remove_id", "dax0.0")
    write(m, "bus/dax/drivers/kmem/unbind", "dax0.0")
    assert read(m, f"{NODE}/online") == "0-1\n" and not exists(m, f"{NODE}/node2")
    link = resolve(m, f"{NODE}/node0/access0").get("targets").get("node2")
    assert link is not None and link.readlink() == "../../../node2"   # dangling, as on 6.1
    assert "System RAM (kmem)" not in m.kernel.proc.get("iomem").read().decode()
    write(m, "bus/dax/drivers/kmem/new_id", "dax0.0")
    for i in range(32, 36):
        write(m, f"{MEM}/memory{i}/state", "online_movable")
    assert tiers(m) == {"memory_tier4": "0-1", "memory_tier22": "2"}
    assert not exists(m, f"{NODE}/node2/access0") and not exists(m, f"{NODE}/node2/memory_side_cache")


def test_zones_online_kernel_and_unmovable_normal_memory():
    """dax1.0 (node 1, 4 blocks).  A block between two Movable ones defaults
    to Movable; online_kernel still puts it in Normal (6.1 has no zone
    restriction on onlining); Normal memory then refuses to go offline."""
    m = machine("qemu-hmat.toml")
    to_kmem(m, "dax1.0")
    write(m, f"{MEM}/memory16/state", "online_movable")
    write(m, f"{MEM}/memory18/state", "online_movable")
    assert read(m, f"{MEM}/memory17/valid_zones") == "Movable Normal\n"
    assert read(m, f"{MEM}/memory19/valid_zones") == "Normal Movable\n"
    assert refused(m, f"{MEM}/memory17/state", "offline") == errno.EINVAL     # offline already
    write(m, f"{MEM}/memory17/state", "online_kernel")
    assert read(m, f"{MEM}/memory17/valid_zones") == "Normal\n"
    write(m, f"{MEM}/memory19/online", "1")                                   # MMOP_ONLINE: default zone
    assert read(m, f"{MEM}/memory19/valid_zones") == "Normal\n"
    assert refused(m, f"{MEM}/memory17/state", "offline") == errno.EBUSY
    assert read(m, f"{MEM}/memory17/state") == "online\n"
    write(m, f"{MEM}/memory16/state", "offline")
    assert read(m, f"{MEM}/memory16/valid_zones") == "Normal Movable\n"
    assert tiers(m) == {"memory_tier4": "0-1"}              # node 1 was DRAM at boot: stays


def test_kmem_unbind_with_online_memory_keeps_the_range():
    """Unbinding kmem succeeds with blocks online; the memory stays (blocks,
    iomem), and neither kmem nor device_dax can have the range again."""
    m = machine("qemu-hmat.toml")
    to_kmem(m, "dax1.0")
    write(m, f"{MEM}/memory16/state", "online_movable")
    write(m, "bus/dax/drivers/kmem/remove_id", "dax1.0")
    write(m, "bus/dax/drivers/kmem/unbind", "dax1.0")
    assert not exists(m, "bus/dax/devices/dax1.0/driver")
    assert read(m, f"{MEM}/memory16/state") == "online\n" and 17 in m.kernel.memory.blocks
    iomem = m.kernel.proc.get("iomem").read().decode()
    assert "80000000-9fffffff : dax1.0" in iomem and "80000000-9fffffff : System RAM (kmem)" in iomem
    write(m, "bus/dax/drivers/kmem/new_id", "dax1.0")                        # attach fails quietly
    assert not exists(m, "bus/dax/devices/dax1.0/driver")
    assert refused(m, "bus/dax/drivers/kmem/bind", "dax1.0") == errno.EBUSY
    assert refused(m, "bus/dax/drivers/device_dax/bind", "dax1.0") == errno.EBUSY
    write(m, f"{MEM}/memory16/state", "offline")                             # still possible
    assert read(m, f"{MEM}/memory16/state") == "offline\n"


def test_auto_online_blocks_and_kmem_refusals():
    m = machine("qemu-hmat.toml")
    write(m, f"{MEM}/auto_online_blocks", "online_movable\n")
    to_kmem(m, "dax1.0")
    assert all(blocks(m)[i] == ("online", "Movable") for i in range(16, 20))
    assert meminfo(m, 1)["MemTotal"] == 447248 + 524288
    write(m, f"{MEM}/auto_online_blocks", "online")
    to_kmem(m, "dax0.0")
    assert all(blocks(m)[i] == ("online", "Normal") for i in range(32, 36))
    assert read(m, f"{NODE}/has_normal_memory") == "0-2\n"
    # a device without a whole memory block: kmem refuses it (EINVAL), which
    # new_id's driver_attach swallows and bind reports
    m2 = Machine(parse('kernel = "6.1"\n[[soft_reserved]]\nstart = 0x90000000\nsize = "64M"\n'
                       'target_node = 0\n'))
    write(m2, "bus/dax/drivers/device_dax/unbind", "dax0.0")
    write(m2, "bus/dax/drivers/kmem/new_id", "dax0.0")
    assert not exists(m2, "bus/dax/devices/dax0.0/driver")
    assert refused(m2, "bus/dax/drivers/kmem/bind", "dax0.0") == errno.EINVAL
    assert sorted(m2.kernel.memory.blocks) == list(range(16))


def test_newer_kernels_place_nodes_by_hmat_performance():
    """6.19: the hmem devices start in kmem (KMEM regions) and CPU-less nodes
    are placed by their HMAT performance relative to node 0's."""
    m = machine("qemu-hmat.toml", kernel="6.19")
    tiers_now = tiers(m)
    dram = m.kernel.hmat.default_dram_perf()
    node1 = m.kernel.memory_tiers.perf_to_adistance(m.kernel.hmat.cpu_perf(1), dram)
    assert node1 == MEMTIER_ADISTANCE_DRAM * 70 // 25 * 36864 // 18432
    assert tiers_now == {"memory_tier4": "0", f"memory_tier{node1 >> 7}": "1"}
    for i in range(32, 36):
        write(m, f"{MEM}/memory{i}/state", "online_movable")
    node2 = MEMTIER_ADISTANCE_DRAM * 300 // 25 * 36864 // 6144
    assert tiers(m)[f"memory_tier{node2 >> 7}"] == "2"


def test_hmat_data_agrees_with_the_firmware_table():
    """qemu-hmat.toml ships QEMU's own HMAT (for /sys/firmware/acpi/tables);
    the locality and cache data the topology declares must be what that
    table says (proximity domain N is node N on that machine)."""
    import struct
    from fakesys.platform.topology import load as load_topology
    spec = load_topology(os.path.join(ROOT, "devices", "qemu-hmat.toml")).sections["machine"]
    with open(os.path.join(spec.source_dir, spec.acpi_tables["HMAT"]), "rb") as f:
        table = f.read()
    assert table[:4] == b"HMAT" and struct.unpack_from("<I", table, 4)[0] == len(table)
    latency: dict[tuple[int, int], dict[str, int]] = {}
    caches: dict[int, list] = {}
    off = 40
    names = {1: "read_latency", 2: "write_latency", 4: "read_bandwidth", 5: "write_bandwidth"}
    while off < len(table):
        kind, length = struct.unpack_from("<H2xI", table, off)
        if kind == 1:
            dtype = table[off + 9]
            ni, nt = struct.unpack_from("<II", table, off + 12)
            base = struct.unpack_from("<Q", table, off + 24)[0]
            inits = struct.unpack_from(f"<{ni}I", table, off + 32)
            targets = struct.unpack_from(f"<{nt}I", table, off + 32 + 4 * ni)
            entries = struct.unpack_from(f"<{ni * nt}H", table, off + 32 + 4 * (ni + nt))
            for i, ini in enumerate(inits):
                for t, tgt in enumerate(targets):
                    value = entries[i * nt + t] * base
                    latency.setdefault((ini, tgt), {})[names[dtype]] = value // 1000 if dtype < 3 else value
        elif kind == 2:
            pd, size, attrs = struct.unpack_from("<I4xQI", table, off + 8)
            assoc = {1: "direct", 2: "complex", 0: "none"}[(attrs >> 8) & 0xF]
            policy = {1: "write-back", 2: "write-through", 0: "none"}[(attrs >> 12) & 0xF]
            caches.setdefault(pd, []).append(((attrs >> 4) & 0xF, size, attrs >> 16, assoc, policy))
        off += length
    from fakesys.platform.topology import CACHE_INDEXING, CACHE_POLICY
    for node in spec.nodes:
        for a in node.access:
            assert latency[(a.initiator, node.id)] == {
                "read_latency": a.read_latency, "write_latency": a.write_latency,
                "read_bandwidth": a.read_bandwidth, "write_bandwidth": a.write_bandwidth}
        ours = [(c.level, c.size, c.line_size, c.indexing, c.write_policy) for c in node.caches]
        theirs = [(lvl, size, line, CACHE_INDEXING[assoc], CACHE_POLICY[policy])
                  for lvl, size, line, assoc, policy in caches.get(node.id, [])]
        assert ours == theirs, node.id
