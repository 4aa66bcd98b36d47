"""Unit tests for fakesys.kernel.nvdimm.label (the on-media label area).

The golden images in tests/data/ were read back with ``ndctl read-labels``
from a real 6.1 kernel with ndctl 76.1 (QEMU NVDIMM, 128 KiB label area):
``nmem0-after-init.bin`` right after ``ndctl init-labels all`` and
``nmem0-four-namespaces.bin`` after the four ``create-namespace`` commands
029-037 on region0 (raw 128M, fsdax 256M, devdax 256M, sector 128M).
"""

from __future__ import annotations

import errno
import random
import struct
import uuid
from pathlib import Path

import pytest

from fakesys.kernel.acpi import nfit
from fakesys.kernel.nvdimm import label as L
from fakesys.kernel.nvdimm.region import InterleaveSet
from fakesys.kernel.sort import kernel_sort

DATA = Path(__file__).parent / "data"
KIB128 = 128 * 1024
MIB = 1024 * 1024

# region0 of the golden QEMU machine: one DIMM, serial table bytes 56 34 12 00
QEMU_DIMM0 = nfit.NfitSetInfo(region_offset=0, serial=0x00123456, vendor_id=0x8086)
QEMU_DIMM1 = nfit.NfitSetInfo(region_offset=0, serial=0x00123457, vendor_id=0x8086)
COOKIE1 = 0x2468AC00123456
COOKIE2 = 0xBA90120012B4DC
ISET0 = InterleaveSet(COOKIE1, COOKIE2, COOKIE1)   # region0's nd_interleave_set
SPA_PM = uuid.UUID("66f0d379-b4f3-4074-ac43-0d3318b78cdb")


class FakeConfigData:
    """A DIMM config data area in memory that logs every command."""

    def __init__(self, content: bytes | int = KIB128, max_xfer: int | None = None):
        if isinstance(content, int):
            content = bytes(content)
        self.buf = bytearray(content)
        self.config_size = len(self.buf)
        if max_xfer is not None:
            self.max_xfer = max_xfer
        self.writes: list[tuple[int, int]] = []
        self.reads: list[tuple[int, int]] = []
        self.fail_after: int | None = None

    def read(self, offset: int, length: int) -> bytes:
        assert 0 <= offset and offset + length <= self.config_size
        self.reads.append((offset, length))
        return bytes(self.buf[offset:offset + length])

    def write(self, offset: int, data: bytes) -> None:
        assert 0 <= offset and offset + len(data) <= self.config_size
        if self.fail_after is not None and len(self.writes) >= self.fail_after:
            raise OSError("power lost")
        self.writes.append((offset, len(data)))
        self.buf[offset:offset + len(data)] = data


def golden(name: str) -> bytes:
    return (DATA / name).read_bytes()


def spec(u: str, dpa: int, rawsize: int, lbasize: int = 0, **kw) -> L.PmemLabelSpec:
    return L.PmemLabelSpec(uuid=uuid.UUID(u), dpa=dpa, rawsize=rawsize, lbasize=lbasize,
                           nd_set=ISET0, **kw)


# ---------------------------------------------------------------- checksums


def test_fletcher64_basic():
    assert L.fletcher64(b"") == 0
    # words 1, 2: lo = 3, hi = 1 + 3
    assert L.fletcher64(struct.pack("<II", 1, 2)) == (4 << 32) | 3
    # trailing partial word ignored
    assert L.fletcher64(struct.pack("<II", 1, 2) + b"\xff") == (4 << 32) | 3
    # lo wraps at 32 bits, result truncated to 64 bits
    big = struct.pack("<I", 0xFFFFFFFF) * 3
    lo = (3 * 0xFFFFFFFF) & 0xFFFFFFFF
    assert L.fletcher64(big) & 0xFFFFFFFF == lo
    assert L.fletcher64(big, le=False) == L.fletcher64(big)


def test_golden_index_checksums():
    for name in ("nmem0-after-init.bin", "nmem0-four-namespaces.bin"):
        img = bytearray(golden(name))
        for off in (0, 256):
            block = bytearray(img[off:off + 256])
            stored = struct.unpack_from("<Q", block, 64)[0]
            block[64:72] = bytes(8)
            assert L.fletcher64(block) == stored


def test_seq_helpers():
    assert [L.nd_inc_seq(s) for s in (0, 1, 2, 3)] == [0, 2, 3, 1]
    assert L.best_seq(3, 2) == 3
    assert L.best_seq(2, 3) == 3
    assert L.best_seq(3, 1) == 1
    assert L.best_seq(1, 3) == 1
    assert L.best_seq(2, 2) == 2
    assert L.best_seq(0, 2) == 2
    assert L.best_seq(2, 0) == 2


# ---------------------------------------------------------------- cookies


def test_cookies_qemu_region0():
    c = nfit.acpi_nfit_init_interleave_set([QEMU_DIMM0])
    assert c.cookie1 == COOKIE1
    assert c.cookie2 == COOKIE2
    assert c.altcookie == COOKIE1
    assert (c.cookie1, c.cookie2, c.altcookie) == (COOKIE1, COOKIE2, COOKIE1)
    assert uuid.UUID(bytes_le=c.type_guid) == SPA_PM


def test_cookie_choice_follows_index_version():
    """nd_region_interleave_set_cookie(): one choice for every user."""
    assert ISET0.cookie((1, 1)) == COOKIE1
    assert ISET0.cookie((1, 2)) == COOKIE2
    assert ISET0.cookie(None) == COOKIE2          # no index yet: what autolabel writes


def test_cookies_qemu_region1():
    c = nfit.acpi_nfit_init_interleave_set([QEMU_DIMM1])
    assert c.cookie2 == 0xBA901C0012B4DD       # boot.txt region1 set_cookie
    assert c.cookie1 == 0x2468AE00123457       # after-init-labels.txt region1


def test_cookie2_record_is_48_bytes():
    assert len(QEMU_DIMM0.pack_v12()) == 48
    assert len(QEMU_DIMM0.pack_v11()) == 16
    # a 64-byte record would have given the wrong value
    assert L.fletcher64(QEMU_DIMM0.pack_v12() + bytes(16)) == 0x10563820012B4DC


def test_cookies_sorted_by_region_offset():
    a = nfit.NfitSetInfo(region_offset=0, serial=0x11)
    b = nfit.NfitSetInfo(region_offset=0x100, serial=0x22)
    c = nfit.NfitSetInfo(region_offset=0x1000000, serial=0x33)
    ref = nfit.acpi_nfit_init_interleave_set([a, b, c])
    assert nfit.acpi_nfit_init_interleave_set([c, a, b]) == ref
    assert ref.cookie1 == L.fletcher64(a.pack_v11() + b.pack_v11() + c.pack_v11())
    # memcmp order of little-endian offsets: 0x1000000 (00 00 00 01) < 0x100 (00 01)
    assert ref.altcookie == L.fletcher64(a.pack_v11() + c.pack_v11() + b.pack_v11())
    assert nfit.interleave_set_positions([c, a, b]) == [2, 0, 1]


def test_kernel_sort_orders_like_sorted():
    rng = random.Random(7)
    for n in range(0, 40):
        xs = [rng.randrange(10) for _ in range(n)]
        out = kernel_sort(xs, lambda x, y: (x > y) - (x < y))
        assert out == sorted(xs)


# ---------------------------------------------------------------- geometry


def test_geometry_128k():
    v11 = L.label_geometry(KIB128, 128)
    assert (v11.index_size, v11.nslot, v11.label_offset, v11.version) == (256, 1020, 0x200, (1, 1))
    v12 = L.label_geometry(KIB128, 256)
    assert (v12.index_size, v12.nslot, v12.label_offset, v12.version) == (256, 510, 0x200, (1, 2))
    assert v12.slot_offset(3) == 0x200 + 3 * 256


def test_geometry_too_small():
    assert L.label_geometry(512, 128) is None
    assert L.sizeof_namespace_index(512, 256) == 0
    assert L.label_geometry(1024, 128) is not None


# ---------------------------------------------------------------- ndctl init-labels


def test_ndctl_init_matches_golden_byte_for_byte():
    io = FakeConfigData(KIB128)
    L.ndctl_init_labels(io)
    assert bytes(io.buf) == golden("nmem0-after-init.bin")
    # one index-sized SET_CONFIG_DATA per index, index 0 first
    assert io.writes == [(0, 256), (256, 256)]


def test_ndctl_init_golden_details():
    img = golden("nmem0-after-init.bin")
    i0, i1 = L.decode_index(img[:256]), L.decode_index(img[256:512])
    assert (i0.seq, i1.seq) == (3, 2)
    assert (i0.major, i0.minor, i0.labelsize, i0.nslot) == (1, 1, 0, 1020)
    assert img[72:200] == b"\xff" * 128          # bits 1020..1023 set too
    assert img[200:256] == bytes(56)
    assert img[512:] == bytes(len(img) - 512)


def test_ndctl_init_keeps_bytes_it_does_not_own():
    io = FakeConfigData(b"\xaa" * KIB128)
    L.ndctl_init_labels(io, label_size=256)
    # 510 slots -> 64 bitmap bytes (72..135); the rest of the block is as read
    assert io.buf[72:136] == b"\xff" * 64
    assert io.buf[136:256] == b"\xaa" * 120
    assert io.buf[512:] == b"\xaa" * (KIB128 - 512)
    area = L.LabelArea(io)
    assert area.validate()
    assert area.label_size == 256 and area.version == (1, 2)


def test_method_ndctl_init_reloads():
    area = L.LabelArea(FakeConfigData(KIB128))
    assert not area.validate()
    area.ndctl_init()
    assert area.valid and area.version == (1, 1)
    assert area.available_slots() == 1019


# ---------------------------------------------------------------- probe


def test_validate_after_ndctl_init():
    area = L.LabelArea(FakeConfigData(golden("nmem0-after-init.bin")))
    assert area.validate()
    assert (area.label_size, area.version, area.nslot) == (128, (1, 1), 1020)
    assert (area.current, area.next) == (0, 1)
    assert area.nfree() == 1020
    assert area.available_slots() == 1019
    assert area.labels() == []


def test_blank_area_reports_509():
    area = L.LabelArea(FakeConfigData(KIB128))
    assert not area.validate()
    assert area.current is None and area.next is None
    assert area.label_size == 256
    assert area.nfree() == 510
    assert area.available_slots() == 509
    assert area.version is None
    assert ISET0.cookie(area.version) == COOKIE2


def test_validate_reads_index_area_then_used_slots():
    io = FakeConfigData(golden("nmem0-four-namespaces.bin"), max_xfer=4096)
    area = L.LabelArea(io)
    assert area.validate()
    # first read covers both index blocks, later reads only in-use slots
    assert io.reads[0][0] == 0 and io.reads[0][1] >= 512
    assert sum(n for _, n in io.reads) < KIB128
    # slot 0 (free, stale UPDATING copy) is zero in memory, not on media
    assert area.data[0x200:0x280] == bytes(128)
    assert io.buf[0x200:0x210] != bytes(16)


def _area_with_seqs(seq0: int, seq1: int) -> L.LabelArea:
    io = FakeConfigData(golden("nmem0-after-init.bin"))
    for off, seq in ((0, seq0), (256, seq1)):
        struct.pack_into("<I", io.buf, off + 20, seq)
        io.buf[off + 64:off + 72] = bytes(8)
        struct.pack_into("<Q", io.buf, off + 64, L.fletcher64(io.buf[off:off + 256]))
    return L.LabelArea(io)


@pytest.mark.parametrize("seq0,seq1,current", [
    (3, 2, 0), (2, 3, 1), (1, 3, 0), (3, 1, 1), (1, 2, 1), (2, 1, 0), (2, 2, 1),
])
def test_validate_picks_newer_index(seq0, seq1, current):
    area = _area_with_seqs(seq0, seq1)
    assert area.validate()
    assert area.current == current and area.next == 1 - current


def test_validate_falls_back_to_the_valid_index():
    io = FakeConfigData(golden("nmem0-after-init.bin"))
    io.buf[70] ^= 0xFF                   # break index 0's checksum
    area = L.LabelArea(io)
    assert area.validate() and area.current == 1
    io.buf[256 + 70] ^= 0xFF             # and index 1's
    assert not area.validate()
    assert area.available_slots() == 509


def test_validate_rejects_zero_seq():
    area = _area_with_seqs(0, 2)
    assert area.validate() and area.current == 1


# ---------------------------------------------------------------- the golden session


NS = [  # uuid, dpa, rawsize, final sector_size
    ("cb18670b-23ef-4212-83d0-c1390ff7cb51", 0x00000000, 128 * MIB, 512),    # raw
    ("1fa05601-0ad3-4921-9489-fdcd855437ab", 0x08000000, 256 * MIB, 512),    # fsdax
    ("7343b3bf-5ab0-4fe5-9f2d-15efdc265827", 0x18000000, 256 * MIB, 512),    # devdax
    ("5b401d37-d046-408d-9c73-2d4b6c394ef6", 0x28000000, 128 * MIB, 4096),   # sector
]


def create_namespace(area: L.LabelArea, u: str, dpa: int, rawsize: int, lbasize: int,
                     *, del_on_idle_writes: bool = True) -> None:
    """The label traffic one ``ndctl create-namespace`` causes on a 1-DIMM
    region: ndctl writes uuid, alt_name, size, sector_size, holder_class and
    the kernel runs nd_namespace_label_update() after each store.  While the
    size is 0 that is a delete (del_labels, one index write); after that a
    two-pass update (two label + two index writes)."""
    s0 = spec(u, dpa, rawsize, lbasize=0)
    if del_on_idle_writes:
        L.pmem_namespace_label_update([(area, s0)], 0)    # uuid store
        L.pmem_namespace_label_update([(area, s0)], 0)    # alt_name store
    L.pmem_namespace_label_update([(area, s0)], rawsize)  # size store
    s1 = spec(u, dpa, rawsize, lbasize=lbasize)
    L.pmem_namespace_label_update([(area, s1)], rawsize)  # sector_size store
    L.pmem_namespace_label_update([(area, s1)], rawsize)  # holder_class store


def test_four_namespaces_match_golden_byte_for_byte():
    io = FakeConfigData(golden("nmem0-after-init.bin"))
    area = L.LabelArea(io)
    assert area.validate()
    for u, dpa, rawsize, lbasize in NS:
        create_namespace(area, u, dpa, rawsize, lbasize)
    assert bytes(io.buf) == golden("nmem0-four-namespaces.bin")


def test_four_namespaces_need_the_delete_writes():
    """Without the index writes of the uuid/alt_name stores the media ends
    with other seq numbers: 32 index writes (8 per create) are needed."""
    io = FakeConfigData(golden("nmem0-after-init.bin"))
    area = L.LabelArea(io)
    for u, dpa, rawsize, lbasize in NS:
        create_namespace(area, u, dpa, rawsize, lbasize, del_on_idle_writes=False)
    assert bytes(io.buf) != golden("nmem0-four-namespaces.bin")


def test_four_namespaces_write_granularity():
    io = FakeConfigData(golden("nmem0-after-init.bin"))
    area = L.LabelArea(io)
    u, dpa, rawsize, lbasize = NS[0]
    create_namespace(area, u, dpa, rawsize, lbasize)
    # del, del, then 3 x (label, index, label, index); index writes alternate
    assert io.writes == [
        (256, 256), (0, 256),
        (0x200, 128), (256, 256), (0x280, 128), (0, 256),
        (0x200, 128), (256, 256), (0x280, 128), (0, 256),
        (0x200, 128), (256, 256), (0x280, 128), (0, 256),
    ]


def test_four_namespaces_readback():
    area = L.LabelArea(FakeConfigData(golden("nmem0-four-namespaces.bin")))
    assert area.validate()
    img = golden("nmem0-four-namespaces.bin")
    assert area.current == 0
    assert (L.decode_index(img[:256]).seq, L.decode_index(img[256:512]).seq) == (2, 1)
    # in memory the next index is a copy of the current one, as in the kernel
    assert area.index(1).free == area.index(0).free
    assert L.decode_index(img[256:512]).free[0] == 0xF0     # slots 0-3 in use
    assert L.decode_index(img[:256]).free[0] == 0xE1        # slots 1-4 in use
    labels = area.labels()
    assert [lb.slot for lb in labels] == [1, 2, 3, 4]
    assert [str(lb.uuid) for lb in labels] == [n[0] for n in NS]
    for lb, (_, dpa, rawsize, lbasize) in zip(labels, NS):
        assert (lb.dpa, lb.rawsize, lb.lbasize) == (dpa, rawsize, lbasize)
        assert (lb.flags, lb.nlabel, lb.position, lb.name) == (0, 1, 0, "")
        assert lb.isetcookie == COOKIE1 == 10248187106440278
    assert area.available_slots() == 1015
    # the stale pass-1 copy sits in the slot the current index marks free
    stale = L.decode_label(golden("nmem0-four-namespaces.bin")[0x200:0x280])
    assert stale.flags == L.NSLABEL_FLAG_UPDATING and stale.slot == 0
    assert str(stale.uuid) == NS[3][0] and stale.lbasize == 4096


# ---------------------------------------------------------------- updates and deletes


def test_update_and_delete_roundtrip_v11():
    io = FakeConfigData(golden("nmem0-after-init.bin"))
    area = L.LabelArea(io)
    a = spec(NS[0][0], 0, 128 * MIB, lbasize=512, name="alpha")
    b = spec(NS[1][0], 128 * MIB, 256 * MIB, lbasize=4096)
    L.pmem_namespace_label_update([(area, a)], a.rawsize)
    L.pmem_namespace_label_update([(area, b)], b.rawsize)
    got = {str(lb.uuid): lb for lb in area.labels()}
    assert set(got) == {NS[0][0], NS[1][0]}
    assert got[NS[0][0]].name == "alpha" and got[NS[0][0]].lbasize == 512
    assert area.available_slots() == 1017
    # a fresh probe sees the same
    again = L.LabelArea(io)
    assert again.validate()
    assert again.labels() == area.labels()

    freed = area.delete(a.uuid)
    assert len(freed) == 1
    assert [str(lb.uuid) for lb in area.labels()] == [NS[1][0]]
    assert area.available_slots() == 1018
    before = len(io.writes)
    assert area.delete(a.uuid) == []        # nothing left, index still written
    assert len(io.writes) == before + 1 and io.writes[-1][1] == 256
    L.pmem_namespace_label_update([(area, b)], 0)
    assert area.labels() == [] and area.available_slots() == 1019
    assert L.LabelArea(io).labels() == []


def test_reap_renamed_uuid():
    area = L.LabelArea(FakeConfigData(golden("nmem0-after-init.bin")))
    old = spec(NS[0][0], 0, 128 * MIB)
    new = spec(NS[1][0], 0, 128 * MIB)
    L.pmem_namespace_label_update([(area, old)], old.rawsize)
    L.pmem_namespace_label_update([(area, new)], new.rawsize, reap=[old.uuid])
    assert [str(lb.uuid) for lb in area.labels()] == [NS[1][0]]


def test_autolabel_blank_area_writes_v12():
    io = FakeConfigData(KIB128)
    area = L.LabelArea(io)
    assert not area.validate()
    pm_guid = uuid.UUID("66f0d379-b4f3-4074-ac43-0d3318b78cdb")
    s = spec(NS[0][0], 0, 64 * MIB, lbasize=4096, type_guid=pm_guid,
             abstraction_guid=L.CLAIM_CLASS_GUIDS["btt2"], name="v12")
    L.pmem_namespace_label_update([(area, s)], s.rawsize)
    # init (2 index writes), then 2 x (label, index), all 256-byte transfers
    assert io.writes == [(0, 256), (256, 256), (0x200, 256), (256, 256),
                         (0x300, 256), (0, 256)]
    # the kernel's own init clears the bitmap bits past nslot (510, 511)
    fresh = L.LabelArea(FakeConfigData(KIB128))
    fresh.validate()
    fresh.init()
    assert fresh.data[72:135] == b"\xff" * 63 and fresh.data[135] == 0x3F
    assert fresh.data[136:256] == bytes(120)

    again = L.LabelArea(io)
    assert again.validate()
    assert again.label_size == 256 and again.version == (1, 2)
    (lb,) = again.labels()
    assert lb.isetcookie == COOKIE2
    assert lb.type_guid == pm_guid
    assert lb.abstraction_guid == L.NVDIMM_BTT2_GUID and lb.claim_class == "btt2"
    assert lb.name == "v12" and lb.slot == 1 and lb.flags == 0
    raw = bytearray(io.buf[0x300:0x400])
    assert raw[128:144] == pm_guid.bytes_le
    assert again.available_slots() == 508


def test_init_is_noop_with_valid_index():
    io = FakeConfigData(golden("nmem0-after-init.bin"))
    area = L.LabelArea(io)
    assert area.init() is False
    assert io.writes == []
    assert area.init(256, force=True) is True
    assert area.version == (1, 2)
    assert L.LabelArea(io).validate()


def test_stale_labels_survive_kernel_init_but_are_free():
    io = FakeConfigData(golden("nmem0-four-namespaces.bin"))
    for off in (0, 256):                      # lose both indexes
        io.buf[off:off + 16] = bytes(16)
    area = L.LabelArea(io)
    assert not area.validate()
    area.init()
    assert io.buf[0x280:0x290] == uuid.UUID(NS[0][0]).bytes   # media untouched
    assert L.LabelArea(io).labels() == []


def test_v12_checksum_and_slot_checks():
    io = FakeConfigData(KIB128)
    area = L.LabelArea(io)
    s = spec(NS[0][0], 0, 64 * MIB)
    L.pmem_namespace_label_update([(area, s)], s.rawsize)
    assert len(L.LabelArea(io).labels()) == 1
    io.buf[0x300 + 40] ^= 1                   # inside the name, under the checksum
    assert L.LabelArea(io).labels() == []
    io.buf[0x300 + 40] ^= 1
    struct.pack_into("<I", io.buf, 0x300 + 120, 7)   # slot field lies
    assert L.LabelArea(io).labels() == []


def test_no_free_slot_is_enxio():
    io = FakeConfigData(1024)                 # v1.1: index 256, 4 slots
    L.ndctl_init_labels(io)
    area = L.LabelArea(io)
    assert area.validate() and area.nslot == 4
    for i in range(3):
        area.update_pmem(spec(str(uuid.UUID(int=i + 1)), i * 4096, 4096), 0)
    assert area.available_slots() == 0 and area.nfree() == 1
    # the pmem update path itself does not hold the last slot back,
    # but with none left the next update fails
    area.update_pmem(spec(str(uuid.UUID(int=4)), 3 * 4096, 4096), 0)
    assert area.nfree() == 0 and area.available_slots() == 0
    with pytest.raises(L.LabelError) as exc:
        area.update_pmem(spec(str(uuid.UUID(int=9)), 0x10000, 4096), 0)
    assert exc.value.errno == errno.ENXIO


def test_update_without_index_is_enxio():
    area = L.LabelArea(FakeConfigData(KIB128))
    with pytest.raises(L.LabelError):
        area.update_pmem(spec(NS[0][0], 0, 4096), 0)
    assert area.delete(uuid.UUID(NS[0][0])) == []


def test_interrupted_update_keeps_previous_state():
    """Cut the power between the label write and the index write: the next
    probe sees the old labels (two-index scheme)."""
    io = FakeConfigData(golden("nmem0-after-init.bin"))
    area = L.LabelArea(io)
    a = spec(NS[0][0], 0, 128 * MIB)
    L.pmem_namespace_label_update([(area, a)], a.rawsize)
    snapshot = [lb for lb in L.LabelArea(io).labels()]
    io.fail_after = len(io.writes) + 1        # label lands, index does not
    b = spec(NS[1][0], 128 * MIB, 128 * MIB)
    with pytest.raises(OSError):
        L.pmem_namespace_label_update([(area, b)], b.rawsize)
    io.fail_after = None
    assert L.LabelArea(io).labels() == snapshot


def test_two_way_set_write_order():
    ios = [FakeConfigData(golden("nmem0-after-init.bin")) for _ in range(2)]
    areas = [L.LabelArea(io) for io in ios]
    log: list[tuple[int, int, int]] = []
    for n, io in enumerate(ios):
        orig = io.write

        def write(offset, data, n=n, orig=orig):
            log.append((n, offset, len(data)))
            orig(offset, data)
        io.write = write
    u = NS[0][0]
    mappings = [(areas[i], spec(u, 0, 64 * MIB, nlabel=2, position=i)) for i in range(2)]
    L.pmem_namespace_label_update(mappings, 128 * MIB)
    assert [(n, size) for n, _, size in log] == [
        (0, 128), (0, 256), (1, 128), (1, 256),    # pass 1, UPDATING
        (0, 128), (0, 256), (1, 128), (1, 256),    # pass 2, flags 0
    ]
    for i, area in enumerate(areas):
        (lb,) = L.LabelArea(ios[i]).labels()
        assert (lb.nlabel, lb.position, lb.flags) == (2, i, 0)


def test_max_xfer_splits_transfers():
    io = FakeConfigData(golden("nmem0-after-init.bin"), max_xfer=100)
    area = L.LabelArea(io)
    assert area.validate()
    L.pmem_namespace_label_update([(area, spec(NS[0][0], 0, 4096))], 4096)
    assert all(n <= 100 for _, n in io.writes + io.reads)
    assert [lb.slot for lb in L.LabelArea(io).labels()] == [1]
