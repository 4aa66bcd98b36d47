"""PFN/DAX info block: layout against the 6.1 recordings, encoding, validation."""

import errno
import struct
import uuid

import pytest

from fakesys.kernel.nvdimm import pfn
from fakesys.kernel.nvdimm.pfn import DAX_SIG, PFN_SIG, PfnMode, PfnSuperblock

from conftest import MemIO

MiB = 1 << 20
GiB = 1 << 30

NS_UUID = uuid.UUID("0f612cf9-5295-42ab-a401-75f4d834e31c")
PFN_UUID = uuid.UUID("6bfa5b2f-3b0c-4b93-9d3b-44e8b5d7a1a0")



def ref_fletcher64(data):
    """Independent word-by-word Fletcher64 (u32 low sum, u64 high sum)."""
    lo, hi = 0, 0
    for i in range(0, len(data), 4):
        lo = (lo + int.from_bytes(data[i:i + 4], "little")) & 0xFFFFFFFF
        hi = (hi + lo) & 0xFFFFFFFFFFFFFFFF
    return ((hi << 32) & 0xFFFFFFFFFFFFFFFF) | lo


# --------------------------------------------------------------------------
# architecture constants


def test_x86_64_alignments():
    assert pfn.supported_alignments() == (4096, 2097152, 1073741824)
    assert pfn.default_alignment() == 2097152
    assert pfn.memremap_compat_align() == 2 * MiB


def test_no_thp_arch_offers_only_page_size():
    arch = pfn.Arch("nothp", page_size=4096, pmd_size=None, pud_size=None, compat_align=2 * MiB)
    assert pfn.supported_alignments(arch) == (4096,)
    assert pfn.default_alignment(arch) == 4096


# --------------------------------------------------------------------------
# golden numbers: namespace resource/size -> pfn/dax resource/size
# (resource None: the recording only has the size, from ndctl's JSON)

GOLDEN = [
    # nfit/sysfs/region0-four-modes.txt, region1-options.txt
    ("nfit pfn0.0 (namespace0.1)", 0x108000000, 268435456, 2 * MiB, PfnMode.PMEM,
     0x108600000, 262144000),
    ("nfit dax0.0 (namespace0.2)", 0x118000000, 268435456, 2 * MiB, PfnMode.PMEM,
     0x118600000, 262144000),
    ("nfit pfn1.0 -M mem (namespace1.0)", 0x140000000, 268435456, 2 * MiB, PfnMode.RAM,
     0x140200000, 266338304),
    ("nfit dax1.1 -a 4K (namespace1.1)", 0x150000000, 67108864, 4096, PfnMode.PMEM,
     0x150200000, 65011712),
    ("nfit pfn1.1 32M (namespace1.3)", 0x158000000, 33554432, 2 * MiB, PfnMode.PMEM,
     0x158200000, 31457280),
    # nfit/cmds/043, 050 (whole 1008 MiB region1), 071 (namespace0.0 128 MiB)
    ("nfit fsdax whole region1", 0x140000000, 1056964608, 2 * MiB, PfnMode.PMEM,
     None, 1040187392),
    ("nfit fsdax namespace0.0", 0x100000000, 134217728, 2 * MiB, PfnMode.PMEM,
     None, 130023424),
    # kmem/sysfs/devdax.txt: whole 1008 MiB region, devdax
    ("kmem dax0.0", 0x100000000, 1056964608, 2 * MiB, PfnMode.PMEM,
     0x101000000, 1040187392),
    # e820/sysfs/fsdax.txt (align 4096), devdax.txt
    ("e820 pfn0.0", 0x80000000, 536870912, 4096, PfnMode.PMEM, 0x80a00000, 526385152),
    ("e820 dax0.0", 0x80000000, 536870912, 2 * MiB, PfnMode.PMEM, 0x80a00000, 526385152),
    # virtio-pmem/sysfs/fsdax.txt (align 4096), devdax.txt
    ("virtio pfn0.0", 0x100000000, 1073741824, 4096, PfnMode.PMEM, 0x101200000, 1054867456),
    ("virtio dax0.0", 0x100000000, 1073741824, 2 * MiB, PfnMode.PMEM, 0x101200000, 1054867456),
    # cxl/sysfs/namespace.txt, devdax.txt, two-namespaces.txt
    ("cxl pfn0.0", 0x110000000, 268435456, 2 * MiB, PfnMode.PMEM, 0x110600000, 262144000),
    ("cxl dax0.0 128M", 0x110000000, 134217728, 2 * MiB, PfnMode.PMEM, 0x110400000, 130023424),
    ("cxl pfn0.0 64M", 0x118000000, 67108864, 2 * MiB, PfnMode.PMEM, 0x118200000, 65011712),
]


@pytest.mark.parametrize("name,start,size,align,mode,resource,dsize", GOLDEN,
                         ids=[g[0] for g in GOLDEN])
def test_golden_resource_and_size(name, start, size, align, mode, resource, dsize):
    lay = pfn.compute_layout(start, size, align=align, mode=mode)
    assert lay.size == dsize
    if resource is not None:
        assert lay.resource == resource
    # the info block carries the same answer
    sb = pfn.new_info_block(dax=False, uuid=PFN_UUID, parent_uuid=NS_UUID, align=align,
                            mode=mode, ns_start=start, ns_size=size)
    assert sb.data_resource(start) == lay.resource
    assert sb.data_size(size) == dsize


@pytest.mark.parametrize("start,size,align,mode,dataoff", [
    (0x108000000, 256 * MiB, 2 * MiB, PfnMode.PMEM, 6 * MiB),
    (0x140000000, 256 * MiB, 2 * MiB, PfnMode.RAM, 2 * MiB),
    (0x150000000, 64 * MiB, 4096, PfnMode.PMEM, 2 * MiB),
    (0x100000000, 1008 * MiB, 2 * MiB, PfnMode.PMEM, 16 * MiB),
])
def test_golden_dataoff(start, size, align, mode, dataoff):
    lay = pfn.compute_layout(start, size, align=align, mode=mode)
    assert lay.dataoff == dataoff
    assert lay.start_pad == 0 and lay.end_trunc == 0
    assert lay.npfns == (size - dataoff) // 4096


def test_end_trunc_to_effective_alignment():
    # a namespace ending 1 MiB past a 2 MiB boundary loses that MiB
    lay = pfn.compute_layout(0x100000000, 65 * MiB, align=4096, mode=PfnMode.PMEM)
    assert lay.end_trunc == 1 * MiB
    assert lay.dataoff == 2 * MiB
    assert lay.size == 62 * MiB
    assert lay.npfns == 62 * MiB // 4096


def test_layout_errors():
    with pytest.raises(OSError) as e:
        pfn.compute_layout(0x100001000, 64 * MiB, align=2 * MiB, mode=PfnMode.PMEM)
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        pfn.compute_layout(0x100000000, 64 * MiB, align=2 * MiB, mode=PfnMode.NONE)
    assert e.value.errno == errno.ENXIO
    with pytest.raises(OSError) as e:  # 1 GiB alignment leaves nothing of 1 GiB
        pfn.compute_layout(0x140000000, 1 * GiB, align=1 * GiB, mode=PfnMode.PMEM)
    assert e.value.errno == errno.ENXIO


# --------------------------------------------------------------------------
# struct nd_pfn_sb


def test_info_block_encoding_offsets():
    sb = pfn.new_info_block(dax=True, uuid=PFN_UUID, parent_uuid=NS_UUID, align=4096,
                            mode=PfnMode.PMEM, ns_start=0x150000000, ns_size=64 * MiB)
    raw = sb.encode()
    assert len(raw) == 4096
    assert raw[0:16] == b"NVDIMM_DAX_INFO\0"
    assert raw[16:32] == PFN_UUID.bytes
    assert raw[32:48] == NS_UUID.bytes
    flags, vmaj, vmin, dataoff, npfns, mode, spad, etrunc, align, psize, pssize = \
        struct.unpack_from("<IHHQQIIIIIH", raw, 48)
    assert (flags, vmaj, vmin) == (0, 1, 4)
    assert dataoff == 2 * MiB and npfns == (62 * MiB) // 4096
    assert mode == 2 and spad == 0 and etrunc == 0
    assert align == 4096  # the configured align, not the effective 2 MiB
    assert (psize, pssize) == (4096, 64)
    assert raw[94:4088] == bytes(3994)
    (csum,) = struct.unpack_from("<Q", raw, 4088)
    assert csum == ref_fletcher64(raw[:4088] + bytes(8))
    assert csum == sb.checksum


def test_decode_roundtrip():
    sb = pfn.new_info_block(dax=False, uuid=PFN_UUID, parent_uuid=None, align=2 * MiB,
                            mode=PfnMode.RAM, ns_start=0x80000000, ns_size=512 * MiB)
    back = PfnSuperblock.decode(sb.encode())
    assert back == sb
    assert back.parent_uuid == pfn.NULL_UUID
    assert back.checksum_ok()
    assert not back.is_dax
    assert back.encode() == sb.encode()


def test_checksum_helper_matches_reference():
    block = bytes(range(256)) * 16
    assert pfn.sb_checksum(block) == ref_fletcher64(block[:-8] + bytes(8))
    assert pfn.sb_checksum(bytes(4096)) == 0
    with pytest.raises(ValueError):
        pfn.sb_checksum(bytes(100))


def test_normalized_old_versions():
    sb = PfnSuperblock(version_minor=0, start_pad=5, end_trunc=7, align=4096,
                       page_size=65536, page_struct_size=128, dataoff=6 * MiB)
    n = sb.normalized()
    assert (n.start_pad, n.end_trunc, n.align) == (0, 0, 0)
    assert (n.page_size, n.page_struct_size) == (4096, 64)
    assert n.effective_align() == 4 * MiB  # largest power of two <= dataoff
    sb3 = PfnSuperblock(version_minor=3, align=2 * MiB, page_size=0, page_struct_size=0)
    assert sb3.normalized().page_struct_size == 64


# --------------------------------------------------------------------------
# validation


def _valid(**kw):
    args = dict(dax=False, uuid=PFN_UUID, parent_uuid=NS_UUID, align=2 * MiB,
                mode=PfnMode.PMEM, ns_start=0x108000000, ns_size=256 * MiB)
    args.update(kw)
    return pfn.new_info_block(**args)


def _check(sb_or_raw, **kw):
    raw = sb_or_raw.encode() if isinstance(sb_or_raw, PfnSuperblock) else sb_or_raw
    args = dict(sig=PFN_SIG, parent_uuid=NS_UUID, ns_start=0x108000000, ns_size=256 * MiB)
    args.update(kw)
    return pfn.validate(raw, **args)


def test_validate_ok_probe_and_init_paths():
    sb = _valid()
    assert _check(sb) == 0
    assert _check(sb, uuid=PFN_UUID, align=2 * MiB, mode=PfnMode.PMEM) == 0


def test_validate_enodev_cases():
    sb = _valid()
    assert _check(sb, sig=DAX_SIG) == -errno.ENODEV
    assert _check(bytes(4096)) == -errno.ENODEV
    raw = bytearray(sb.encode())
    raw[200] ^= 1
    assert _check(bytes(raw)) == -errno.ENODEV  # checksum
    assert _check(sb, parent_uuid=uuid.uuid4()) == -errno.ENODEV
    assert _check(sb, parent_uuid=None) == -errno.ENODEV
    assert _check(sb, uuid=uuid.uuid4(), align=2 * MiB, mode=PfnMode.PMEM) == -errno.ENODEV
    assert _check(sb, region_is_memory=False) == -errno.ENODEV


def test_validate_io_namespace_has_null_parent():
    sb = _valid(parent_uuid=None)
    assert _check(sb, parent_uuid=None) == 0
    assert _check(sb, parent_uuid=NS_UUID) == -errno.ENODEV


def test_validate_enxio_cases():
    assert _check(None) == -errno.ENXIO
    sb = _valid()
    sb.mode = 7
    assert _check(sb) == -errno.ENXIO


def test_validate_settings_mismatch_is_eopnotsupp():
    sb = _valid()
    assert _check(sb, uuid=PFN_UUID, align=4096, mode=PfnMode.PMEM) == -errno.EOPNOTSUPP
    assert _check(sb, uuid=PFN_UUID, align=2 * MiB, mode=PfnMode.RAM) == -errno.EOPNOTSUPP


def test_validate_eopnotsupp_geometry():
    sb = _valid()
    # namespace moved so the data start is no longer aligned
    assert _check(sb, ns_start=0x108100000) == -errno.EOPNOTSUPP
    # namespace shrank below the data offset
    assert _check(sb, ns_size=4 * MiB) == -errno.EOPNOTSUPP
    # page sizes incompatible with an on-media memmap
    big = _valid()
    big.page_size = 65536
    assert _check(big) == -errno.EOPNOTSUPP
    small = _valid()
    small.page_struct_size = 32
    assert _check(small) == -errno.EOPNOTSUPP
    small.mode = PfnMode.RAM  # only checked for pmem mode ...
    assert _check(small, uuid=None) == 0
    # dax refuses an alignment this kernel cannot map; fsdax does not care
    odd = _valid(dax=True)
    odd.align = 8192
    assert _check(odd, sig=DAX_SIG) == -errno.EOPNOTSUPP
    odd_pfn = _valid()
    odd_pfn.align = 8192
    assert _check(odd_pfn) == 0


def test_validate_no_align_and_no_data_offset():
    """1UL << ilog2(0) is 2^63: larger than any namespace, and no dax
    alignment either, so neither kind of block is usable."""
    assert PfnSuperblock(dataoff=0, align=0).effective_align() == 1 << 63
    sb = _valid()
    sb.align, sb.dataoff = 0, 0
    assert _check(sb, uuid=None) == -errno.EOPNOTSUPP
    dax = _valid(dax=True)
    dax.align, dax.dataoff = 0, 0
    assert _check(dax, sig=DAX_SIG, uuid=None) == -errno.EOPNOTSUPP
    io = MemIO(256 * MiB)
    io.write(4096, sb.encode())
    with pytest.raises(OSError) as e:
        pfn.probe(io, dax=False, parent_uuid=NS_UUID, ns_start=0x108000000, ns_size=256 * MiB)
    assert e.value.errno == errno.EOPNOTSUPP


def test_validate_end_not_compat_aligned():
    sb = _valid()
    # same start, a size that no longer ends on a 2 MiB boundary
    assert _check(sb, ns_size=256 * MiB + 4096) == -errno.EOPNOTSUPP


# --------------------------------------------------------------------------
# media operations


def test_setup_writes_fresh_block_then_reuses_it():
    io = MemIO(256 * MiB)
    sb = pfn.setup(io, dax=False, uuid=PFN_UUID, mode=PfnMode.PMEM, align=2 * MiB,
                   parent_uuid=NS_UUID, ns_start=0x108000000, ns_size=256 * MiB)
    assert sb.data_resource(0x108000000) == 0x108600000
    assert sb.data_size(256 * MiB) == 262144000
    assert io.read(4096, 4096) == sb.encode()
    assert io.read(0, 4096) == bytes(4096)  # nothing else touched
    writes = io.writes
    again = pfn.setup(io, dax=False, uuid=PFN_UUID, mode=PfnMode.PMEM, align=2 * MiB,
                      parent_uuid=NS_UUID, ns_start=0x108000000, ns_size=256 * MiB)
    assert io.writes == writes
    assert again == sb


def test_setup_mismatch_and_reinit():
    io = MemIO(256 * MiB)
    kw = dict(parent_uuid=NS_UUID, ns_start=0x108000000, ns_size=256 * MiB)
    pfn.setup(io, dax=False, uuid=PFN_UUID, mode=PfnMode.PMEM, align=2 * MiB, **kw)
    with pytest.raises(OSError) as e:
        pfn.setup(io, dax=False, uuid=PFN_UUID, mode=PfnMode.RAM, align=2 * MiB, **kw)
    assert e.value.errno == errno.EOPNOTSUPP
    # a new uuid means "no info block": a fresh one replaces it
    other = uuid.uuid4()
    sb = pfn.setup(io, dax=False, uuid=other, mode=PfnMode.RAM, align=2 * MiB, **kw)
    assert sb.uuid == other and sb.dataoff == 2 * MiB
    # a dax device does not see the pfn block and writes its own
    sb = pfn.setup(io, dax=True, uuid=PFN_UUID, mode=PfnMode.PMEM, align=2 * MiB, **kw)
    assert sb.is_dax


def test_setup_errors():
    io = MemIO(64 * MiB)
    kw = dict(dax=True, mode=PfnMode.PMEM, align=4096, parent_uuid=NS_UUID,
              ns_start=0x150000000, ns_size=64 * MiB)
    with pytest.raises(OSError) as e:
        pfn.setup(io, uuid=None, **kw)
    assert e.value.errno == errno.ENODEV
    with pytest.raises(OSError) as e:
        pfn.setup(io, uuid=PFN_UUID, read_only=True, **kw)
    assert e.value.errno == errno.ENXIO
    assert io.writes == 0
    # read-only is fine when a valid block already exists
    pfn.setup(io, uuid=PFN_UUID, **kw)
    sb = pfn.setup(io, uuid=PFN_UUID, read_only=True, **kw)
    assert sb.data_resource(0x150000000) == 0x150200000


def test_probe_adopts_settings():
    io = MemIO(64 * MiB)
    kw = dict(parent_uuid=NS_UUID, ns_start=0x150000000, ns_size=64 * MiB)
    assert pfn.probe(io, dax=True, **kw) is None
    pfn.setup(io, dax=True, uuid=PFN_UUID, mode=PfnMode.PMEM, align=4096, **kw)
    sb = pfn.probe(io, dax=True, **kw)
    assert (sb.uuid, sb.effective_align(), sb.mode) == (PFN_UUID, 4096, PfnMode.PMEM)
    assert pfn.probe(io, dax=False, **kw) is None
    assert pfn.probe(io, dax=True, parent_uuid=uuid.uuid4(),
                     ns_start=0x150000000, ns_size=64 * MiB) is None


def test_read_failure_is_enxio():
    class Broken:
        def read(self, off, n):
            raise OSError(errno.EIO, "media error")

        def write(self, off, data):
            raise AssertionError("must not write")

    assert pfn.read_info_block(Broken()) is None
    with pytest.raises(OSError) as e:
        pfn.setup(Broken(), dax=False, uuid=PFN_UUID, mode=PfnMode.PMEM, align=2 * MiB,
                  parent_uuid=NS_UUID, ns_start=0x108000000, ns_size=256 * MiB)
    assert e.value.errno == errno.ENXIO
