"""BTT: sysfs size against the 6.1 recordings, info block, fresh format, discovery."""

import errno
import struct
import uuid

import pytest

from fakesys.kernel.nvdimm import btt
from fakesys.kernel.nvdimm.btt import BttSuperblock, ClaimClass

from conftest import MemIO

KiB = 1 << 10
MiB = 1 << 20

NS_UUID = uuid.UUID("4df80df8-486b-4727-8a9d-f4658d6146cf")
BTT_UUID = uuid.UUID("8aef4d58-28dd-4d31-967e-765c04a19608")



# --------------------------------------------------------------------------
# golden: namespace size -> btt size (4096-byte sectors, v1.1)

GOLDEN = [
    # nfit/sysfs/region0-four-modes.txt btt0.0 on namespace0.3; pmem0.3s size 259776
    ("nfit namespace0.3 128M", 134217728, 133005312),
    # nfit/sysfs/region1-options.txt btt1.1 on namespace1.2; pmem1.2s size 128832
    ("nfit namespace1.2 64M", 67108864, 65961984),
    # nfit/cmds/054: whole 1008 MiB region1 in sector mode
    ("nfit namespace1.0 1008M", 1056964608, 1054851072),
    # e820/sysfs/sector.txt (memmap=512M!2G); pmem0s size 1045440
    ("e820 namespace0.0 512M", 536870912, 535265280),
    # virtio-pmem/cmds/011: 1 GiB virtio-pmem device
    ("virtio namespace0.0 1G", 1073741824, 1071611904),
    # cxl/cmds/092: 256 MiB namespace on a CXL pmem region
    ("cxl namespace0.0 256M", 268435456, 267091968),
]


@pytest.mark.parametrize("name,ns_size,size", GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_size(name, ns_size, size):
    assert btt.btt_size(ns_size, 4096) == size
    geo = btt.geometry(ns_size, 4096)
    assert geo.size == size
    assert geo.capacity_sectors == size // 512


def test_golden_gendisk_capacity():
    assert btt.geometry(134217728, 4096).capacity_sectors == 259776
    assert btt.geometry(67108864, 4096).capacity_sectors == 128832
    assert btt.geometry(536870912, 4096).capacity_sectors == 1045440


def test_128m_arena_layout():
    geo = btt.geometry(128 * MiB, 4096)
    assert geo.initial_offset == 4096
    assert geo.rawsize == 128 * MiB - 4096
    (a,) = geo.arenas
    assert (a.version_major, a.version_minor) == (1, 1)
    assert a.nfree == 256
    assert a.internal_lbasize == a.external_lbasize == 4096
    assert a.internal_nlba == 32728
    assert a.external_nlba == 32472
    assert a.infooff == 0 and a.dataoff == 4096 and a.nextoff == 0
    logsize = 256 * 64
    assert a.info2off == geo.rawsize - 4096
    assert a.logoff == a.info2off - logsize
    assert a.mapoff == a.logoff - 32472 * 4 // 4096 * 4096 - 4096  # map rounded up to pages
    assert a.dataoff + a.internal_nlba * a.internal_lbasize <= a.mapoff


@pytest.mark.parametrize("lbasize,internal,sector", [
    (512, 512, 512), (520, 576, 512), (528, 576, 512),
    (4096, 4096, 4096), (4104, 4160, 4096), (4160, 4160, 4096), (4224, 4224, 4096),
])
def test_lbasize_rounding_and_sector_size(lbasize, internal, sector):
    geo = btt.geometry(64 * MiB, lbasize)
    assert geo.arenas[0].internal_lbasize == internal
    assert geo.sector_size == sector
    assert geo.size == geo.nlba * sector


def test_512_byte_sectors():
    geo = btt.geometry(128 * MiB, 512)
    available = 128 * MiB - 4096 - 2 * 4096 - 16 * KiB
    assert geo.arenas[0].internal_nlba == (available - 4096) // 516
    assert geo.size == (geo.arenas[0].internal_nlba - 256) * 512


def test_unsupported_lbasize():
    with pytest.raises(OSError) as e:
        btt.geometry(64 * MiB, 1024)
    assert e.value.errno == errno.EINVAL


def test_minimum_size_depends_on_version():
    # v1.1 starts at 4 KiB, so a 16 MiB namespace leaves less than one arena
    with pytest.raises(OSError) as e:
        btt.geometry(16 * MiB, 4096)
    assert e.value.errno == errno.ENXIO
    assert btt.geometry(16 * MiB + 4096, 4096).nlba > 0
    # v2.0 (claim class BTT2) starts at 0
    geo = btt.geometry(16 * MiB, 4096, ClaimClass.BTT2)
    assert geo.initial_offset == 0
    assert (geo.arenas[0].version_major, geo.arenas[0].version_minor) == (2, 0)


def test_btt2_uses_the_first_page_too():
    v11 = btt.geometry(128 * MiB, 4096)
    v20 = btt.geometry(128 * MiB, 4096, ClaimClass.BTT2)
    assert v20.rawsize == v11.rawsize + 4096
    assert v20.nlba >= v11.nlba


def test_version_per_claim_class():
    assert btt.btt_version(ClaimClass.NONE) == btt.BttVersion(1, 1, 4096)
    assert btt.btt_version(ClaimClass.BTT) == btt.BttVersion(1, 1, 4096)
    assert btt.btt_version(ClaimClass.BTT2) == btt.BttVersion(2, 0, 0)


def test_multiple_arenas():
    ns = 4096 + btt.ARENA_MAX_SIZE + 100 * MiB
    geo = btt.geometry(ns, 4096)
    first, second = geo.arenas
    assert first.size == btt.ARENA_MAX_SIZE and first.nextoff == btt.ARENA_MAX_SIZE
    assert second.infooff == btt.ARENA_MAX_SIZE and second.size == 100 * MiB
    assert second.nextoff == 0
    assert second.external_lba_start == first.external_nlba
    assert geo.nlba == first.external_nlba + second.external_nlba


def test_short_tail_is_left_unused():
    ns = 4096 + btt.ARENA_MAX_SIZE + 8 * MiB
    geo = btt.geometry(ns, 4096)
    (only,) = geo.arenas
    assert only.nextoff == 0
    assert geo.nlba == btt.geometry(4096 + btt.ARENA_MAX_SIZE, 4096).nlba


# --------------------------------------------------------------------------
# struct btt_sb


def test_superblock_encoding_offsets():
    geo = btt.geometry(64 * MiB, 4096)
    a = geo.arenas[0]
    sb = BttSuperblock.for_arena(a, uuid=BTT_UUID, parent_uuid=NS_UUID)
    raw = sb.encode()
    assert len(raw) == 4096
    assert raw[:16] == b"BTT_ARENA_INFO\0\0"
    assert raw[16:32] == BTT_UUID.bytes and raw[32:48] == NS_UUID.bytes
    f = struct.unpack_from("<IHHIIIIIIQQQQQ", raw, 48)
    flags, vmaj, vmin, elbasize, enlba, ilbasize, inlba, nfree, infosize = f[:9]
    nextoff, dataoff, mapoff, logoff, info2off = f[9:]
    assert (flags, vmaj, vmin) == (0, 1, 1)
    assert (elbasize, enlba, ilbasize, inlba, nfree, infosize) == \
        (4096, 16104, 4096, 16360, 256, 4096)
    assert (nextoff, dataoff) == (0, 4096)
    assert (mapoff, logoff, info2off) == (a.mapoff, a.logoff, a.info2off)
    assert raw[120:4088] == bytes(3968)
    assert struct.unpack_from("<Q", raw, 4088)[0] == sb.checksum
    back = BttSuperblock.decode(raw)
    assert back == sb and back.checksum_ok()


def test_arena_is_valid():
    a = btt.geometry(64 * MiB, 4096).arenas[0]
    raw = BttSuperblock.for_arena(a, uuid=BTT_UUID, parent_uuid=NS_UUID).encode()
    assert btt.arena_is_valid(raw, NS_UUID)
    assert not btt.arena_is_valid(raw, uuid.uuid4())
    assert not btt.arena_is_valid(raw, None)
    bad = bytearray(raw)
    bad[100] ^= 0x80
    assert not btt.arena_is_valid(bytes(bad), NS_UUID)
    assert not btt.arena_is_valid(bytes(4096), NS_UUID)
    # an all-zero parent uuid (io namespace) matches any namespace
    anon = BttSuperblock.for_arena(a, uuid=BTT_UUID, parent_uuid=None).encode()
    assert btt.arena_is_valid(anon, NS_UUID) and btt.arena_is_valid(anon, None)


# --------------------------------------------------------------------------
# formatting and discovery


def _format(ns_size=64 * MiB, claim_class=ClaimClass.NONE, lbasize=4096, **kw):
    io = MemIO(ns_size)
    geo = btt.format_btt(io, ns_size=ns_size, lbasize=lbasize, uuid=BTT_UUID,
                         parent_uuid=NS_UUID, claim_class=claim_class, **kw)
    return io, geo


def test_format_v11_places_info_blocks():
    io, geo = _format()
    a = geo.arenas[0]
    primary = io.read(4096, 4096)
    backup = io.read(4096 + a.info2off, 4096)
    assert primary == backup
    assert 4096 + a.info2off + 4096 == 64 * MiB  # backup is the namespace's last page
    assert io.read(0, 4096) == bytes(4096)  # first page untouched in v1.1
    sb = BttSuperblock.decode(primary)
    assert btt.arena_is_valid(sb, NS_UUID)
    assert sb.uuid == BTT_UUID and sb.external_lbasize == 4096


def test_format_log_lanes():
    io, geo = _format()
    a = geo.arenas[0]
    log = io.read(4096 + a.logoff, 256 * 64)
    for lane in (0, 1, 255):
        ents = [struct.unpack_from("<IIII", log, lane * 64 + i * 16) for i in range(4)]
        blk = a.external_nlba + lane
        assert ents[0] == (lane, blk, blk, 1)
        assert ents[1] == ents[2] == ents[3] == (0, 0, 0, 0)


def test_format_btt2_at_offset_zero():
    io, geo = _format(claim_class=ClaimClass.BTT2)
    sb = BttSuperblock.decode(io.read(0, 4096))
    assert (sb.version_major, sb.version_minor) == (2, 0)
    assert btt.arena_is_valid(sb, NS_UUID)


def test_discover_finds_what_format_wrote():
    io, geo = _format(ns_size=128 * MiB)
    writes = io.writes
    found = btt.discover_arenas(io, ns_size=128 * MiB, lbasize=4096, parent_uuid=NS_UUID)
    assert io.writes == writes  # a clean BTT needs no repair
    assert found.size == 133005312
    assert found.arenas == geo.arenas
    assert found.arenas[0].log_index == (0, 1)


def test_discover_none_on_blank_media():
    io = MemIO(64 * MiB)
    assert btt.discover_arenas(io, ns_size=64 * MiB, lbasize=4096, parent_uuid=NS_UUID) is None


def test_discover_rejects_other_namespace():
    io, _ = _format()
    assert btt.discover_arenas(io, ns_size=64 * MiB, lbasize=4096,
                               parent_uuid=uuid.uuid4()) is None


def test_discover_multi_arena_and_corruption():
    ns = 4096 + btt.ARENA_MAX_SIZE + 64 * MiB
    io, geo = _format(ns_size=ns, zero_map=False)
    found = btt.discover_arenas(io, ns_size=ns, lbasize=4096, parent_uuid=NS_UUID)
    assert len(found.arenas) == 2 and found.nlba == geo.nlba
    # second arena's info block damaged: corrupted metadata, not "no arenas"
    second = geo.arenas[1]
    io.write(4096 + second.infooff, bytes(4096))
    with pytest.raises(OSError) as e:
        btt.discover_arenas(io, ns_size=ns, lbasize=4096, parent_uuid=NS_UUID)
    assert e.value.errno == errno.ENODEV


def _lane_off(a, lane, slot):
    return 4096 + a.logoff + lane * 64 + slot * 16


def test_discover_log_corruption_is_eio():
    io, geo = _format()
    a = geo.arenas[0]
    blk = a.external_nlba + 3
    io.write(_lane_off(a, 3, 1), struct.pack("<IIII", 3, blk, blk, 1))  # two seq 1s
    with pytest.raises(OSError) as e:
        btt.discover_arenas(io, ns_size=64 * MiB, lbasize=4096, parent_uuid=NS_UUID)
    assert e.value.errno == errno.EIO


def test_discover_unknown_log_layout_is_enxio():
    io, geo = _format()
    a = geo.arenas[0]
    io.write(_lane_off(a, 0, 3), struct.pack("<IIII", 1, 2, 3, 2))
    io.write(_lane_off(a, 0, 1), struct.pack("<IIII", 1, 2, 3, 2))
    with pytest.raises(OSError) as e:
        btt.discover_arenas(io, ns_size=64 * MiB, lbasize=4096, parent_uuid=NS_UUID)
    assert e.value.errno == errno.ENXIO


def test_discover_old_padding_scheme():
    # pre-4.15 kernels used slots 0 and 2 of each log group
    io, geo = _format()
    a = geo.arenas[0]
    free = a.external_nlba
    # lane 0 did one write: lba 7 moved to the free block, block 7 became free
    io.write(_lane_off(a, 0, 2), struct.pack("<IIII", 7, 7, free, 2))
    io.write(4096 + a.mapoff + 7 * 4, struct.pack("<I", free | 0xC0000000))
    found = btt.discover_arenas(io, ns_size=64 * MiB, lbasize=4096, parent_uuid=NS_UUID)
    assert found.arenas[0].log_index == (0, 2)


def test_discover_completes_interrupted_map_update():
    io, geo = _format()
    a = geo.arenas[0]
    free = a.external_nlba
    # log committed (slot 1, seq 2) but the map still has the identity entry
    io.write(_lane_off(a, 0, 1), struct.pack("<IIII", 5, 5, free, 2))
    btt.discover_arenas(io, ns_size=64 * MiB, lbasize=4096, parent_uuid=NS_UUID)
    (ent,) = struct.unpack("<I", io.read(4096 + a.mapoff + 5 * 4, 4))
    assert ent == free | 0xC0000000


# --------------------------------------------------------------------------
# bind (attach) and boot-time auto-detection (probe)


def test_attach_formats_then_discovers():
    io = MemIO(128 * MiB)
    kw = dict(ns_size=128 * MiB, lbasize=4096, uuid=BTT_UUID, parent_uuid=NS_UUID)
    geo = btt.attach(io, **kw)
    assert geo.size == 133005312
    writes = io.writes
    again = btt.attach(io, **kw)
    assert io.writes == writes
    assert again.size == geo.size


def test_attach_errors():
    io = MemIO(64 * MiB)
    with pytest.raises(OSError) as e:
        btt.attach(io, ns_size=64 * MiB, lbasize=4096, uuid=None, parent_uuid=NS_UUID)
    assert e.value.errno == errno.ENODEV
    with pytest.raises(OSError) as e:
        btt.attach(io, ns_size=64 * MiB, lbasize=0, uuid=BTT_UUID, parent_uuid=NS_UUID)
    assert e.value.errno == errno.ENODEV
    with pytest.raises(OSError) as e:
        btt.attach(MemIO(16 * MiB), ns_size=16 * MiB, lbasize=4096, uuid=BTT_UUID,
                   parent_uuid=NS_UUID)
    assert e.value.errno == errno.ENXIO
    with pytest.raises(OSError) as e:
        btt.attach(io, ns_size=64 * MiB, lbasize=4096, uuid=BTT_UUID, parent_uuid=NS_UUID,
                   read_only=True)
    assert e.value.errno == errno.ENOMEM
    assert io.writes == 0


def test_probe():
    io, _ = _format(lbasize=520)
    sb = btt.probe(io, ns_size=64 * MiB, parent_uuid=NS_UUID)
    assert sb.uuid == BTT_UUID and sb.external_lbasize == 520
    assert btt.probe(io, ns_size=64 * MiB, parent_uuid=NS_UUID, claim_class=ClaimClass.BTT)
    # v1.1 media is not a BTT for a BTT2 namespace, nor for pfn/dax claims
    assert btt.probe(io, ns_size=64 * MiB, parent_uuid=NS_UUID,
                     claim_class=ClaimClass.BTT2) is None
    assert btt.probe(io, ns_size=64 * MiB, parent_uuid=NS_UUID,
                     claim_class=ClaimClass.PFN) is None
    assert btt.probe(MemIO(64 * MiB), ns_size=64 * MiB, parent_uuid=NS_UUID) is None
    io2, _ = _format(claim_class=ClaimClass.BTT2)
    assert btt.probe(io2, ns_size=64 * MiB, parent_uuid=NS_UUID,
                     claim_class=ClaimClass.BTT2).version_major == 2
    assert btt.probe(io2, ns_size=64 * MiB, parent_uuid=NS_UUID) is None
