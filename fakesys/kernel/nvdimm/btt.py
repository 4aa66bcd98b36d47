"""BTT (Block Translation Table): geometry, info block and fresh-media format.

Counterpart of ``drivers/nvdimm/btt.h``, the metadata half of
``drivers/nvdimm/btt.c`` (``alloc_arena``, ``create_arenas``,
``btt_meta_init``, ``discover_arenas``, ``log_set_indices``,
``btt_freelist_init``) and the info-block checks of ``btt_devs.c``
(``nd_btt_arena_is_valid``, ``nd_btt_version``, ``__nd_btt_probe``).  The
per-sector read/write path is not emulated here.

On-media picture.  The BTT occupies the namespace from ``initial_offset``
(4096 for BTT v1.1, i.e. claim class NONE or BTT; 0 for v2.0, class BTT2)
to its end; that "raw" space is cut into arenas of at most 512 GiB.  Each
arena is::

    info block (4 KiB) | data blocks | map | log | backup info block (4 KiB)

All offsets in :class:`Arena` are relative to the BTT start (namespace
offset ``initial_offset``); the ones in :class:`BttSuperblock` are relative
to the arena's own info block, as on media.

Media access goes through an ``io`` object with ``read(offset, length) ->
bytes`` and ``write(offset, data)``, offsets relative to the namespace start.

The sysfs ``size`` of a bound BTT is ``nlba * sector_size`` where ``nlba`` is
the sum of the arenas' external LBAs and ``sector_size`` is 4096 for
lbasize >= 4096, else 512 (the protection-information bytes of 520/528/
4104/... are not counted).
"""

from __future__ import annotations

import errno
import struct
import uuid as uuidlib
from dataclasses import dataclass, field, replace
from enum import IntEnum

from .pfn import NULL_UUID, sb_checksum
from fakesys.kernel.sizes import SZ_2M, SZ_4K

__all__ = [
    "ARENA_MAX_SIZE",
    "ARENA_MIN_SIZE",
    "BTT_DEFAULT_NFREE",
    "BTT_PG_SIZE",
    "BTT_SIG",
    "INT_LBASIZE_ALIGNMENT",
    "SUPPORTED_LBASIZES",
    "Arena",
    "BttGeometry",
    "BttSuperblock",
    "BttVersion",
    "ClaimClass",
    "alloc_arena",
    "arena_is_valid",
    "attach",
    "btt_size",
    "btt_version",
    "create_arenas",
    "discover_arenas",
    "format_btt",
    "geometry",
    "probe",
    "sector_size_of",
]


BTT_SIG = b"BTT_ARENA_INFO\x00\x00"
SIG_LEN = 16
BTT_PG_SIZE = 4096
MAP_ENT_SIZE = 4
LOG_ENT_SIZE = 16
LOG_GRP_SIZE = 4 * LOG_ENT_SIZE
ARENA_MIN_SIZE = 1 << 24  # 16 MiB
ARENA_MAX_SIZE = 1 << 39  # 512 GiB
#: nd.h ND_MAX_LANES: the number of free blocks (and log lanes) per arena.
BTT_DEFAULT_NFREE = 256
#: nd.h INT_LBASIZE_ALIGNMENT: internal block size is the external one
#: rounded up to this.
INT_LBASIZE_ALIGNMENT = 64
LOG_SEQ_INIT = 1
IB_FLAG_ERROR = 0x1  # arena flag; logged by the kernel, never acted on

MAP_TRIM_SHIFT = 31
MAP_ERR_SHIFT = 30
MAP_TRIM_MASK = 1 << MAP_TRIM_SHIFT
MAP_ERR_MASK = 1 << MAP_ERR_SHIFT
MAP_LBA_MASK = ~(MAP_TRIM_MASK | MAP_ERR_MASK) & 0xFFFFFFFF
MAP_ENT_NORMAL = 0xC0000000

#: btt_lbasize_supported: the values the ``sector_size`` attribute offers.
SUPPORTED_LBASIZES = (512, 520, 528, 4096, 4104, 4160, 4224)


class ClaimClass(IntEnum):
    """Mirror of ``enum nvdimm_claim_class`` (namespace ``holder_class``)."""

    NONE = 0
    BTT = 1
    BTT2 = 2
    PFN = 3
    DAX = 4
    UNKNOWN = 5


@dataclass(frozen=True)
class BttVersion:
    """Info-block placement and version for a claim class (``nd_btt_version``)."""

    major: int
    minor: int
    #: Namespace offset of the first arena (its info block).
    initial_offset: int


def btt_version(claim_class: ClaimClass | int = ClaimClass.NONE) -> BttVersion:
    """v2.0 at offset 0 for class BTT2 (v1.2 labels), else v1.1 at 4096."""
    if claim_class == ClaimClass.BTT2:
        return BttVersion(2, 0, 0)
    return BttVersion(1, 1, SZ_4K)


def sector_size_of(lbasize: int) -> int:
    """Linux logical block size for a BTT lbasize: 4096 or 512."""
    return 4096 if lbasize >= 4096 else 512


def _roundup(x: int, a: int) -> int:
    return (x + a - 1) // a * a


# --------------------------------------------------------------------------
# geometry (alloc_arena / create_arenas)


@dataclass(frozen=True)
class Arena:
    """One arena (``struct arena_info`` minus the run-time state).

    ``infooff``/``dataoff``/``mapoff``/``logoff``/``info2off`` are relative to
    the BTT start; ``nextoff`` is as on media: the arena size when another
    arena follows, else 0.
    """

    size: int
    external_lba_start: int
    internal_nlba: int
    internal_lbasize: int
    external_nlba: int
    external_lbasize: int
    nfree: int
    version_major: int
    version_minor: int
    nextoff: int
    infooff: int
    dataoff: int
    mapoff: int
    logoff: int
    info2off: int
    flags: int = 0
    #: Which two of the four entries of a log group hold entries (the
    #: pre-4.15 layout used (0, 2)); fresh arenas use (0, 1).
    log_index: tuple[int, int] = (0, 1)


def alloc_arena(size: int, lbasize: int, *, arena_off: int = 0,
                external_lba_start: int = 0, version: BttVersion | None = None,
                nextoff: int = 0) -> Arena:
    """Lay out one arena of ``size`` bytes starting at ``arena_off``.

    The usable space (size rounded down to 4 KiB, less the two info blocks
    and the log) is split between data blocks and 4-byte map entries, with
    one spare page kept for the map's round-up; ``nfree`` internal blocks
    are reserved as the free pool and not exported.
    """
    version = version or btt_version()
    internal_lbasize = _roundup(lbasize, INT_LBASIZE_ALIGNMENT)
    nfree = BTT_DEFAULT_NFREE
    available = size - size % BTT_PG_SIZE
    available -= 2 * BTT_PG_SIZE
    logsize = _roundup(nfree * LOG_GRP_SIZE, BTT_PG_SIZE)
    available -= logsize
    internal_nlba = (available - BTT_PG_SIZE) // (internal_lbasize + MAP_ENT_SIZE)
    external_nlba = internal_nlba - nfree
    if internal_nlba >= 1 << 32 or external_nlba <= 0:
        raise ValueError(f"arena size {size} cannot hold a BTT of lbasize {lbasize}")
    mapsize = _roundup(external_nlba * MAP_ENT_SIZE, BTT_PG_SIZE)
    datasize = available - mapsize
    dataoff = arena_off + BTT_PG_SIZE
    mapoff = dataoff + datasize
    logoff = mapoff + mapsize
    info2off = logoff + logsize
    return Arena(
        size=size,
        external_lba_start=external_lba_start,
        internal_nlba=internal_nlba,
        internal_lbasize=internal_lbasize,
        external_nlba=external_nlba,
        external_lbasize=lbasize,
        nfree=nfree,
        version_major=version.major,
        version_minor=version.minor,
        nextoff=nextoff,
        infooff=arena_off,
        dataoff=dataoff,
        mapoff=mapoff,
        logoff=logoff,
        info2off=info2off,
    )


def create_arenas(rawsize: int, lbasize: int,
                  version: BttVersion | None = None) -> list[Arena]:
    """Arenas of a fresh BTT over ``rawsize`` bytes.

    Full 512 GiB arenas then the remainder; a tail shorter than 16 MiB is
    left unused.
    """
    arenas: list[Arena] = []
    remaining = rawsize
    cur_off = 0
    nlba = 0
    while remaining:
        arena_size = min(ARENA_MAX_SIZE, remaining)
        remaining -= arena_size
        if arena_size < ARENA_MIN_SIZE:
            break
        nextoff = arena_size if remaining >= ARENA_MIN_SIZE else 0
        arena = alloc_arena(arena_size, lbasize, arena_off=cur_off,
                            external_lba_start=nlba, version=version, nextoff=nextoff)
        arenas.append(arena)
        nlba += arena.external_nlba
        cur_off += arena_size
    return arenas


@dataclass(frozen=True)
class BttGeometry:
    """A BTT instance as the block layer sees it (``struct btt``)."""

    version: BttVersion
    rawsize: int
    lbasize: int
    arenas: tuple[Arena, ...]

    @property
    def initial_offset(self) -> int:
        return self.version.initial_offset

    @property
    def sector_size(self) -> int:
        return sector_size_of(self.lbasize)

    @property
    def nlba(self) -> int:
        return sum(a.external_nlba for a in self.arenas)

    @property
    def size(self) -> int:
        """sysfs ``size`` of the bound bttR.J device, in bytes."""
        return self.nlba * self.sector_size

    @property
    def capacity_sectors(self) -> int:
        """gendisk capacity (``/sys/block/pmemXs/size``), 512-byte sectors."""
        return self.size >> 9


def _check_rawsize(ns_size: int, version: BttVersion) -> int:
    rawsize = ns_size - version.initial_offset
    if rawsize < ARENA_MIN_SIZE:
        raise OSError(errno.ENXIO,
                      f"namespace must be at least {ARENA_MIN_SIZE + version.initial_offset} bytes")
    return rawsize


def geometry(ns_size: int, lbasize: int,
             claim_class: ClaimClass | int = ClaimClass.NONE) -> BttGeometry:
    """Geometry of a fresh BTT on a namespace of ``ns_size`` bytes.

    Raises ``OSError(ENXIO)`` when the space after ``initial_offset`` is
    below 16 MiB (so a 16 MiB namespace cannot hold a v1.1 BTT) and
    ``OSError(EINVAL)`` for an lbasize not in :data:`SUPPORTED_LBASIZES`.
    """
    if lbasize not in SUPPORTED_LBASIZES:
        raise OSError(errno.EINVAL, f"unsupported BTT lbasize {lbasize}")
    version = btt_version(claim_class)
    rawsize = _check_rawsize(ns_size, version)
    arenas = create_arenas(rawsize, lbasize, version)
    return BttGeometry(version, rawsize, lbasize, tuple(arenas))


def btt_size(ns_size: int, lbasize: int,
             claim_class: ClaimClass | int = ClaimClass.NONE) -> int:
    """sysfs ``size`` of a BTT freshly initialized on the namespace."""
    return geometry(ns_size, lbasize, claim_class).size


# --------------------------------------------------------------------------
# struct btt_sb

# signature, uuid, parent_uuid, flags, version_major, version_minor,
# external_lbasize, external_nlba, internal_lbasize, internal_nlba, nfree,
# infosize, nextoff, dataoff, mapoff, logoff, info2off
_HEAD = struct.Struct("<16s16s16sIHHIIIIIIQQQQQ")
_PADDING_LEN = 3968
_CHECKSUM = struct.Struct("<Q")
INFO_BLOCK_SIZE = 4096
assert _HEAD.size + _PADDING_LEN + _CHECKSUM.size == INFO_BLOCK_SIZE


@dataclass
class BttSuperblock:
    """``struct btt_sb``, one per arena plus a backup copy at its end.

    The offsets are relative to the arena's info block.
    """

    signature: bytes = BTT_SIG
    uuid: uuidlib.UUID = NULL_UUID
    #: Namespace uuid; all-zero (accepted for any namespace) for io namespaces.
    parent_uuid: uuidlib.UUID = NULL_UUID
    flags: int = 0
    version_major: int = 1
    version_minor: int = 1
    external_lbasize: int = 0
    external_nlba: int = 0
    internal_lbasize: int = 0
    internal_nlba: int = 0
    nfree: int = 0
    infosize: int = INFO_BLOCK_SIZE
    nextoff: int = 0
    dataoff: int = 0
    mapoff: int = 0
    logoff: int = 0
    info2off: int = 0
    padding: bytes = field(default=bytes(_PADDING_LEN), repr=False)
    checksum: int = 0

    def encode(self, checksum: int | None = None) -> bytes:
        """The 4096 on-media bytes; ``checksum=None`` computes the right one."""
        if len(self.signature) != SIG_LEN:
            raise ValueError("signature must be 16 bytes")
        pad = bytes(self.padding)[:_PADDING_LEN].ljust(_PADDING_LEN, b"\0")
        body = _HEAD.pack(
            self.signature, self.uuid.bytes, self.parent_uuid.bytes, self.flags,
            self.version_major, self.version_minor, self.external_lbasize,
            self.external_nlba, self.internal_lbasize, self.internal_nlba,
            self.nfree, self.infosize, self.nextoff, self.dataoff, self.mapoff,
            self.logoff, self.info2off,
        ) + pad
        if checksum is None:
            checksum = sb_checksum(body + bytes(8))
        return body + _CHECKSUM.pack(checksum)

    @classmethod
    def decode(cls, raw: bytes) -> BttSuperblock:
        if len(raw) < INFO_BLOCK_SIZE:
            raise ValueError(f"need {INFO_BLOCK_SIZE} bytes, got {len(raw)}")
        raw = bytes(raw[:INFO_BLOCK_SIZE])
        f = _HEAD.unpack_from(raw)
        (checksum,) = _CHECKSUM.unpack_from(raw, INFO_BLOCK_SIZE - 8)
        return cls(
            signature=f[0], uuid=uuidlib.UUID(bytes=f[1]),
            parent_uuid=uuidlib.UUID(bytes=f[2]), flags=f[3],
            version_major=f[4], version_minor=f[5], external_lbasize=f[6],
            external_nlba=f[7], internal_lbasize=f[8], internal_nlba=f[9],
            nfree=f[10], infosize=f[11], nextoff=f[12], dataoff=f[13],
            mapoff=f[14], logoff=f[15], info2off=f[16],
            padding=raw[_HEAD.size:_HEAD.size + _PADDING_LEN], checksum=checksum,
        )

    def checksum_ok(self) -> bool:
        return self.checksum == sb_checksum(self.encode(checksum=0))

    @classmethod
    def for_arena(cls, arena: Arena, *, uuid: uuidlib.UUID,
                  parent_uuid: uuidlib.UUID | None) -> BttSuperblock:
        """The info block ``btt_arena_write_layout`` writes for ``arena``."""
        base = arena.infooff
        sb = cls(
            uuid=uuid,
            parent_uuid=parent_uuid or NULL_UUID,
            flags=0,
            version_major=arena.version_major,
            version_minor=arena.version_minor,
            external_lbasize=arena.external_lbasize,
            external_nlba=arena.external_nlba,
            internal_lbasize=arena.internal_lbasize,
            internal_nlba=arena.internal_nlba,
            nfree=arena.nfree,
            infosize=INFO_BLOCK_SIZE,
            nextoff=arena.nextoff,
            dataoff=arena.dataoff - base,
            mapoff=arena.mapoff - base,
            logoff=arena.logoff - base,
            info2off=arena.info2off - base,
        )
        sb.checksum = sb_checksum(sb.encode(checksum=0))
        return sb

    def to_arena(self, arena_off: int, external_lba_start: int = 0) -> Arena:
        """Arena described by this block when found at ``arena_off``
        (``parse_arena_meta``)."""
        info2off = arena_off + self.info2off
        size = self.nextoff if self.nextoff else info2off - arena_off + BTT_PG_SIZE
        return Arena(
            size=size,
            external_lba_start=external_lba_start,
            internal_nlba=self.internal_nlba,
            internal_lbasize=self.internal_lbasize,
            external_nlba=self.external_nlba,
            external_lbasize=self.external_lbasize,
            nfree=self.nfree,
            version_major=self.version_major,
            version_minor=self.version_minor,
            nextoff=self.nextoff,
            infooff=arena_off,
            dataoff=arena_off + self.dataoff,
            mapoff=arena_off + self.mapoff,
            logoff=arena_off + self.logoff,
            info2off=info2off,
            flags=self.flags,
        )


def arena_is_valid(raw: bytes | BttSuperblock,
                   parent_uuid: uuidlib.UUID | None) -> bool:
    """``nd_btt_arena_is_valid``: signature, parent uuid (unless the block's
    is all-zero) and checksum.  Version, uuid and lbasize are not checked
    here."""
    sb = raw if isinstance(raw, BttSuperblock) else BttSuperblock.decode(raw)
    if sb.signature != BTT_SIG:
        return False
    if sb.parent_uuid != NULL_UUID and sb.parent_uuid != (parent_uuid or NULL_UUID):
        return False
    return sb.checksum_ok()


# --------------------------------------------------------------------------
# media access


class _ArenaIO:
    """Arena-relative view of the namespace (adds ``initial_offset``)."""

    def __init__(self, io, initial_offset: int):
        self.io = io
        self.base = initial_offset

    def read(self, off: int, n: int) -> bytes:
        data = bytes(self.io.read(self.base + off, n))
        if len(data) != n:
            raise OSError(errno.EIO, "short read")
        return data

    def write(self, off: int, data: bytes) -> None:
        self.io.write(self.base + off, bytes(data))


_LOG_ENT = struct.Struct("<IIII")  # lba, old_map, new_map, seq


def _log_entries(group: bytes) -> list[tuple[int, int, int, int]]:
    return [_LOG_ENT.unpack_from(group, i * LOG_ENT_SIZE) for i in range(4)]


def _write_zeroes(aio: _ArenaIO, off: int, length: int, chunk: int) -> None:
    zero = bytes(min(chunk, length))
    while length:
        n = min(length, chunk)
        aio.write(off, zero[:n])
        off += n
        length -= n


def _write_layout(aio: _ArenaIO, arena: Arena, sb: BttSuperblock, zero_map: bool) -> None:
    """``btt_arena_write_layout``: map, log, then backup and primary info."""
    if zero_map:
        _write_zeroes(aio, arena.mapoff, arena.logoff - arena.mapoff, SZ_2M)
    _write_zeroes(aio, arena.logoff, arena.info2off - arena.logoff, SZ_4K)
    # One valid entry per lane, in slot 0 of its group: the lane's free block
    # is the internal block right after the exported ones.
    lanes = bytearray(arena.nfree * LOG_GRP_SIZE)
    for lane in range(arena.nfree):
        blk = arena.external_nlba + lane
        _LOG_ENT.pack_into(lanes, lane * LOG_GRP_SIZE, lane, blk, blk, LOG_SEQ_INIT)
    aio.write(arena.logoff, bytes(lanes))
    raw = sb.encode()
    aio.write(arena.info2off, raw)
    aio.write(arena.infooff, raw)


def format_btt(io, *, ns_size: int, lbasize: int, uuid: uuidlib.UUID,
               parent_uuid: uuidlib.UUID | None,
               claim_class: ClaimClass | int = ClaimClass.NONE,
               zero_map: bool = True) -> BttGeometry:
    """Initialize a fresh BTT on the namespace (``create_arenas`` +
    ``btt_meta_init``) and return its geometry.

    ``zero_map=False`` skips clearing the map when the caller knows the
    media there is already zero (the log is always written).
    """
    geo = geometry(ns_size, lbasize, claim_class)
    aio = _ArenaIO(io, geo.initial_offset)
    for arena in geo.arenas:
        sb = BttSuperblock.for_arena(arena, uuid=uuid, parent_uuid=parent_uuid)
        _write_layout(aio, arena, sb, zero_map)
    return geo


# --------------------------------------------------------------------------
# discovery (discover_arenas and what it runs per arena)


def _ent_is_padding(ent: tuple[int, int, int, int]) -> bool:
    return ent == (0, 0, 0, 0)


def _log_set_indices(groups: list[bytes], nfree: int) -> tuple[int, int]:
    """Find which two slots of each log group are used; ENXIO if unknown."""
    idx_set = False
    initial_state = True
    log_index = [-1, -1]
    next_idx = 0
    for lane in range(nfree):
        ents = _log_entries(groups[lane])
        pad_count = 0
        for j, ent in enumerate(ents):
            if not idx_set:
                if _ent_is_padding(ent):
                    pad_count += 1
                    continue
                if next_idx == 1 and j == log_index[0]:
                    continue
                log_index[next_idx] = j
                next_idx += 1
                if next_idx == 2:
                    idx_set = True
            else:
                if j == log_index[0]:
                    if _ent_is_padding(ent):
                        raise OSError(errno.ENXIO, "log entry where padding expected")
                elif j != log_index[1] and not _ent_is_padding(ent):
                    raise OSError(errno.ENXIO, "padding slot in use")
        if pad_count < 3:
            initial_state = False
    if not initial_state and not idx_set:
        raise OSError(errno.ENXIO, "unable to deduce log indices")
    if initial_state:
        log_index[1] = 1
    if not (log_index[0] == 0 and log_index[1] in (1, 2)):
        raise OSError(errno.ENXIO, "unknown log padding scheme")
    return log_index[0], log_index[1]


def _log_get_old(seq0: int, seq1: int) -> int:
    """Which of the two entries of a lane is the older one (0 or 1)."""
    if seq0 == 0:
        return 0
    if seq0 == seq1 or seq0 + seq1 > 5:
        return -1
    if seq0 < seq1:
        return 0 if seq1 - seq0 == 1 else 1
    return 1 if seq0 - seq1 == 1 else 0


def _map_lookup(raw_entry: int, premap: int) -> int:
    return premap if raw_entry & (MAP_TRIM_MASK | MAP_ERR_MASK) == 0 else raw_entry & MAP_LBA_MASK


def _freelist_check(aio: _ArenaIO, arena: Arena, groups: list[bytes], sector_size: int) -> None:
    """``btt_freelist_init`` minus the in-memory free list: validate each
    lane's log, clear a free block flagged bad, and finish a map update an
    interrupted write left behind."""
    i0, i1 = arena.log_index
    for lane in range(arena.nfree):
        ents = _log_entries(groups[lane])
        e0, e1 = ents[i0], ents[i1]
        old = _log_get_old(e0[3], e1[3])
        if old not in (0, 1):
            raise OSError(errno.EIO, f"log corruption in lane {lane}")
        lba, old_map, new_map, _seq = (e0, e1)[1 - old]
        old_blk = old_map & MAP_LBA_MASK
        new_blk = new_map & MAP_LBA_MASK
        if old_map & MAP_ERR_MASK and (old_map & MAP_ENT_NORMAL) != MAP_ENT_NORMAL:
            aio.write(arena.dataoff + old_blk * arena.internal_lbasize, bytes(sector_size))
        if old_blk == new_blk:
            continue
        (raw,) = struct.unpack("<I", aio.read(arena.mapoff + lba * MAP_ENT_SIZE, MAP_ENT_SIZE))
        mapped = _map_lookup(raw, lba)
        if new_blk != mapped and old_blk == mapped:
            fixed = (new_map & MAP_LBA_MASK) | MAP_ENT_NORMAL
            aio.write(arena.mapoff + lba * MAP_ENT_SIZE, struct.pack("<I", fixed))


def discover_arenas(io, *, ns_size: int, lbasize: int, parent_uuid: uuidlib.UUID | None,
                    claim_class: ClaimClass | int = ClaimClass.NONE) -> BttGeometry | None:
    """Look for an existing BTT the way ``discover_arenas`` does.

    Returns None when the first arena has no valid info block (the kernel
    logs "No existing arenas" and formats).  Raises ``OSError``: ENODEV for
    an invalid info block after a valid arena ("Found corrupted
    metadata!"), ENXIO for an unrecognisable log layout, EIO for a corrupt
    log lane or a failed read.  May write to the media as the kernel does
    (clearing a bad free block, completing an interrupted map update).
    """
    version = btt_version(claim_class)
    rawsize = _check_rawsize(ns_size, version)
    aio = _ArenaIO(io, version.initial_offset)
    arenas: list[Arena] = []
    remaining = rawsize
    cur_off = 0
    cur_nlba = 0
    while remaining:
        raw = aio.read(cur_off, INFO_BLOCK_SIZE)
        if not arena_is_valid(raw, parent_uuid):
            if not arenas:
                return None
            raise OSError(errno.ENODEV, "found corrupted BTT metadata")
        sb = BttSuperblock.decode(raw)
        arena = sb.to_arena(cur_off, cur_nlba)
        groups_raw = aio.read(arena.logoff, arena.nfree * LOG_GRP_SIZE)
        groups = [groups_raw[i * LOG_GRP_SIZE:(i + 1) * LOG_GRP_SIZE] for i in range(arena.nfree)]
        log_index = _log_set_indices(groups, arena.nfree)
        arena = replace(arena, log_index=log_index)
        _freelist_check(aio, arena, groups, sector_size_of(lbasize))
        arenas.append(arena)
        remaining -= min(arena.size, remaining)
        cur_off += arena.size
        cur_nlba += arena.external_nlba
        if arena.nextoff == 0:
            break
    return BttGeometry(version, rawsize, lbasize, tuple(arenas))


def attach(io, *, ns_size: int, lbasize: int, uuid: uuidlib.UUID | None,
           parent_uuid: uuidlib.UUID | None,
           claim_class: ClaimClass | int = ClaimClass.NONE,
           read_only: bool = False, zero_map: bool = True) -> BttGeometry:
    """Bind-time setup of a BTT (``nvdimm_namespace_attach_btt`` + ``btt_init``).

    Uses an existing BTT if one is found, else formats the namespace.
    Errors as the bind would return them: ENODEV when uuid or lbasize is
    unset, ENXIO when the namespace is too small; every failure inside
    ``btt_init`` (corrupt metadata, a read-only region without a BTT) makes
    the kernel return ENOMEM.
    """
    if uuid is None or not lbasize:
        raise OSError(errno.ENODEV, "incomplete btt configuration")
    version = btt_version(claim_class)
    _check_rawsize(ns_size, version)
    try:
        geo = discover_arenas(io, ns_size=ns_size, lbasize=lbasize,
                              parent_uuid=parent_uuid, claim_class=claim_class)
    except OSError as e:
        raise OSError(errno.ENOMEM, f"btt init failed: {e.strerror}") from e
    if geo is not None:
        return geo
    if read_only:
        raise OSError(errno.ENOMEM, "region is read-only, unable to init btt metadata")
    return format_btt(io, ns_size=ns_size, lbasize=lbasize, uuid=uuid,
                      parent_uuid=parent_uuid, claim_class=claim_class, zero_map=zero_map)


def probe(io, *, ns_size: int, parent_uuid: uuidlib.UUID | None,
          claim_class: ClaimClass | int = ClaimClass.NONE) -> BttSuperblock | None:
    """Auto-detection at region enable (``nd_btt_probe``).

    Returns the first arena's info block when the namespace carries a BTT of
    the version its claim class implies (the new bttR.J device takes
    ``uuid`` and ``external_lbasize`` from it), else None.  Claim classes
    other than NONE/BTT/BTT2 and ``force_raw`` never probe as BTT.
    """
    if claim_class not in (ClaimClass.NONE, ClaimClass.BTT, ClaimClass.BTT2):
        return None
    if ns_size < ARENA_MIN_SIZE:  # __nd_btt_probe: capacity below 16 MiB
        return None
    version = btt_version(claim_class)
    try:
        raw = bytes(io.read(version.initial_offset, INFO_BLOCK_SIZE))
    except OSError:
        return None
    if len(raw) != INFO_BLOCK_SIZE or not arena_is_valid(raw, parent_uuid):
        return None
    sb = BttSuperblock.decode(raw)
    if (sb.version_major, sb.version_minor) != (version.major, version.minor):
        return None
    return sb
