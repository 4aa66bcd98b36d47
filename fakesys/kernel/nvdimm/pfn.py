"""PFN / DAX info block: the on-media superblock of fsdax and devdax namespaces.

Counterpart of ``drivers/nvdimm/pfn.h`` and the info-block half of
``drivers/nvdimm/pfn_devs.c`` (``nd_pfn_validate``, ``nd_pfn_init``,
``nvdimm_setup_pfn``) plus ``nd_dax_probe`` from ``dax_devs.c``, which uses the
same block with a different signature.

A pfn (fsdax) or dax (devdax) device keeps one 4 KiB ``struct nd_pfn_sb`` at
namespace offset 4096; the first 8 KiB of the namespace are reserved for info
blocks.  The block records where the data area starts (``dataoff``) and how
much is cut off at the end (``end_trunc``); the device's sysfs ``resource`` and
``size`` are derived from these and from the namespace resource.

Media access goes through an ``io`` object with ``read(offset, length) ->
bytes`` and ``write(offset, data)``, offsets relative to the namespace start.

Errors follow the kernel: validation returns ``0`` or a negative ``errno``
value; the operations that build or bind something raise :class:`OSError`
whose ``errno`` is the positive value the kernel would have returned negated.

Architecture facts (x86-64, the only architecture emulated):

* ``PAGE_SIZE`` 4096, ``HPAGE_PMD_SIZE`` 2 MiB, ``HPAGE_PUD_SIZE`` 1 GiB, so
  ``supported_alignments`` is ``4096 2097152 1073741824`` and the default
  alignment is the PMD size (``nd_pfn_supported_alignments``,
  ``nd_pfn_default_alignment``).
* ``memremap_compat_align()`` is the generic one from ``mm/memremap.c``
  (used unless ``CONFIG_ARCH_HAS_MEMREMAP_COMPAT_ALIGN``), which returns
  ``SUBSECTION_SIZE`` = 2 MiB.  Only powerpc overrides it
  (``arch/powerpc/mm/book3s64/pgtable.c``: with the hash MMU the larger of
  ``SUBSECTION_SIZE`` and the linear-map page size, typically 16 MiB).
* ``sizeof(struct page)`` is 64 = ``MAX_STRUCT_PAGE_SIZE`` in a production
  kernel.
"""

from __future__ import annotations

import errno
import struct
import uuid as uuidlib
from dataclasses import dataclass, field, replace
from enum import IntEnum

from .label import fletcher64
from fakesys.kernel.sizes import PAGE_SIZE, SZ_1G, SZ_2M, SZ_4K, SZ_8K

__all__ = [
    "DAX_SIG",
    "INFO_BLOCK_OFFSET",
    "INFO_BLOCK_RESERVE",
    "INFO_BLOCK_SIZE",
    "MAX_STRUCT_PAGE_SIZE",
    "NULL_UUID",
    "PAGE_SIZE",
    "PFN_SIG",
    "Arch",
    "PfnLayout",
    "PfnMode",
    "PfnSuperblock",
    "X86_64",
    "compute_layout",
    "default_alignment",
    "memremap_compat_align",
    "new_info_block",
    "probe",
    "read_info_block",
    "sb_checksum",
    "setup",
    "supported_alignments",
    "validate",
]


PFN_SIG = b"NVDIMM_PFN_INFO\x00"
DAX_SIG = b"NVDIMM_DAX_INFO\x00"
SIG_LEN = 16

#: Namespace offset of the info block, and its size.
INFO_BLOCK_OFFSET = SZ_4K
INFO_BLOCK_SIZE = SZ_4K
#: Bytes at the start of every namespace kept for info blocks
#: (``nd_info_block_reserve()``); the struct-page area starts after them.
INFO_BLOCK_RESERVE = SZ_8K

#: Size reserved per page for its ``struct page`` when the memmap is on media.
MAX_STRUCT_PAGE_SIZE = 64

#: Version written by ``nd_pfn_init``.
VERSION_MAJOR = 1
VERSION_MINOR = 4

NULL_UUID = uuidlib.UUID(int=0)


class PfnMode(IntEnum):
    """Where the ``struct page`` array lives (``enum nd_pfn_mode``)."""

    NONE = 0
    RAM = 1
    PMEM = 2


@dataclass(frozen=True)
class Arch:
    """The few architecture constants the info-block code depends on."""

    name: str
    page_size: int
    #: ``HPAGE_PMD_SIZE`` when transparent huge pages are available, else None.
    pmd_size: int | None
    #: ``HPAGE_PUD_SIZE`` when PUD-sized THP is available, else None.
    pud_size: int | None
    #: ``memremap_compat_align()``.
    compat_align: int
    #: ``sizeof(struct page)``.
    struct_page_size: int = 64


X86_64 = Arch("x86_64", page_size=SZ_4K, pmd_size=SZ_2M, pud_size=SZ_1G, compat_align=SZ_2M)


def supported_alignments(arch: Arch = X86_64) -> tuple[int, ...]:
    """Values listed in ``supported_alignments`` (page, then PMD and PUD)."""
    out = [arch.page_size]
    if arch.pmd_size:
        out.append(arch.pmd_size)
        if arch.pud_size:
            out.append(arch.pud_size)
    return tuple(out)


def default_alignment(arch: Arch = X86_64) -> int:
    """Initial ``align`` of a pfn/dax device: PMD size if THP, else a page."""
    return arch.pmd_size or arch.page_size


def memremap_compat_align(arch: Arch = X86_64) -> int:
    """Minimum namespace alignment that lets it switch between modes."""
    return arch.compat_align


# --------------------------------------------------------------------------
# checksum (claim.c nd_sb_checksum; Fletcher64 is core.c nd_fletcher64)


def sb_checksum(block: bytes) -> int:
    """Checksum of a 4 KiB pfn/dax/btt info block.

    Fletcher64 of the whole block with its last 8 bytes (the checksum field)
    taken as zero.
    """
    if len(block) != SZ_4K:
        raise ValueError(f"info block must be {SZ_4K} bytes, got {len(block)}")
    return fletcher64(bytes(block[:-8]) + bytes(8), le=True)


# --------------------------------------------------------------------------
# struct nd_pfn_sb

# signature, uuid, parent_uuid, flags, version_major, version_minor, dataoff,
# npfns, mode, start_pad, end_trunc, align, page_size, page_struct_size
_HEAD = struct.Struct("<16s16s16sIHHQQIIIIIH")
_PADDING_LEN = 3994
_CHECKSUM = struct.Struct("<Q")
assert _HEAD.size + _PADDING_LEN + _CHECKSUM.size == INFO_BLOCK_SIZE


@dataclass
class PfnSuperblock:
    """``struct nd_pfn_sb`` as stored on media (all fields little-endian).

    ``mode`` is kept as a plain int on decode so that junk values survive;
    :meth:`encode` always recomputes the checksum unless one is forced.
    """

    signature: bytes = PFN_SIG
    uuid: uuidlib.UUID = NULL_UUID
    #: Namespace uuid; all-zero for label-less (io) namespaces.
    parent_uuid: uuidlib.UUID = NULL_UUID
    flags: int = 0
    version_major: int = VERSION_MAJOR
    version_minor: int = VERSION_MINOR
    #: Offset of the data area from namespace start + start_pad.
    dataoff: int = 0
    npfns: int = 0
    mode: int = PfnMode.NONE
    start_pad: int = 0
    end_trunc: int = 0
    align: int = 0
    page_size: int = PAGE_SIZE
    page_struct_size: int = MAX_STRUCT_PAGE_SIZE
    padding: bytes = field(default=bytes(_PADDING_LEN), repr=False)
    #: Checksum as read from media (decode) or last encoded.
    checksum: int = 0

    @property
    def is_dax(self) -> bool:
        return self.signature == DAX_SIG

    def encode(self, checksum: int | None = None) -> bytes:
        """The 4096 on-media bytes; ``checksum=None`` computes the right one."""
        if len(self.signature) != SIG_LEN:
            raise ValueError("signature must be 16 bytes")
        pad = bytes(self.padding)[:_PADDING_LEN].ljust(_PADDING_LEN, b"\0")
        head = _HEAD.pack(
            self.signature,
            self.uuid.bytes,
            self.parent_uuid.bytes,
            self.flags,
            self.version_major,
            self.version_minor,
            self.dataoff,
            self.npfns,
            int(self.mode),
            self.start_pad,
            self.end_trunc,
            self.align,
            self.page_size,
            self.page_struct_size,
        )
        body = head + pad
        if checksum is None:
            checksum = sb_checksum(body + bytes(8))
        return body + _CHECKSUM.pack(checksum)

    @classmethod
    def decode(cls, raw: bytes) -> PfnSuperblock:
        if len(raw) < INFO_BLOCK_SIZE:
            raise ValueError(f"need {INFO_BLOCK_SIZE} bytes, got {len(raw)}")
        raw = bytes(raw[:INFO_BLOCK_SIZE])
        (sig, u, pu, flags, vmaj, vmin, dataoff, npfns, mode, start_pad,
         end_trunc, align, page_size, psize) = _HEAD.unpack_from(raw)
        (checksum,) = _CHECKSUM.unpack_from(raw, INFO_BLOCK_SIZE - 8)
        return cls(
            signature=sig,
            uuid=uuidlib.UUID(bytes=u),
            parent_uuid=uuidlib.UUID(bytes=pu),
            flags=flags,
            version_major=vmaj,
            version_minor=vmin,
            dataoff=dataoff,
            npfns=npfns,
            mode=mode,
            start_pad=start_pad,
            end_trunc=end_trunc,
            align=align,
            page_size=page_size,
            page_struct_size=psize,
            padding=raw[_HEAD.size:_HEAD.size + _PADDING_LEN],
            checksum=checksum,
        )

    def checksum_ok(self) -> bool:
        """Whether the stored checksum matches the block contents."""
        return self.checksum == sb_checksum(self.encode(checksum=0))

    def normalized(self, arch: Arch = X86_64) -> PfnSuperblock:
        """Fields as the kernel sees them after validation.

        Blocks older than minor version 1 have no pads, older than 2 no
        align, older than 4 no page sizes (taken as 4 KiB pages with 64-byte
        struct pages).
        """
        sb = self
        if sb.version_minor < 1:
            sb = replace(sb, start_pad=0, end_trunc=0)
        if sb.version_minor < 2:
            sb = replace(sb, align=0)
        if sb.version_minor < 4:
            sb = replace(sb, page_struct_size=64, page_size=arch.page_size)
        return sb

    def effective_align(self) -> int:
        """Alignment the kernel uses: ``align``, or for blocks that did not
        record one the largest power of two dividing into ``dataoff``.

        With no data offset either, ``1UL << ilog2(0)``: ilog2 gives -1 and
        the shift count is taken mod 64 (x86-64 and arm64 alike), so 2^63,
        which exceeds any namespace: such a block is rejected, never shown
        as a device of alignment 0 (a divisor for ndctl)."""
        if self.align:
            return self.align
        if self.dataoff == 0:
            return 1 << 63
        return 1 << (self.dataoff.bit_length() - 1)

    def data_resource(self, ns_start: int) -> int:
        """What the bound device's sysfs ``resource`` shows."""
        return ns_start + self.start_pad + self.dataoff

    def data_size(self, ns_size: int) -> int:
        """What the bound device's sysfs ``size`` shows."""
        return ns_size - self.start_pad - self.end_trunc - self.dataoff


# --------------------------------------------------------------------------
# layout (nd_pfn_init)


def _align_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def _align_down(x: int, a: int) -> int:
    return x // a * a


@dataclass(frozen=True)
class PfnLayout:
    """Result of the ``nd_pfn_init`` geometry computation."""

    ns_start: int
    ns_size: int
    start_pad: int
    end_trunc: int
    dataoff: int
    npfns: int

    @property
    def resource(self) -> int:
        """sysfs ``resource`` of the bound pfn/dax device."""
        return self.ns_start + self.start_pad + self.dataoff

    @property
    def size(self) -> int:
        """sysfs ``size`` of the bound pfn/dax device."""
        return self.ns_size - self.start_pad - self.end_trunc - self.dataoff


def compute_layout(ns_start: int, ns_size: int, *, align: int, mode: PfnMode | int,
                   arch: Arch = X86_64) -> PfnLayout:
    """Place the data area of a fresh info block.

    The effective alignment is the larger of the requested one and
    ``memremap_compat_align()``; the namespace end is truncated down to it,
    and the data starts at the first aligned address after the 8 KiB info
    reserve (``ram``) or after the reserve plus 64 bytes of ``struct page``
    per page of the namespace (``pmem``).  ``start_pad`` is always 0 now.

    Raises ``OSError(EINVAL)`` when the namespace start is not aligned to
    ``memremap_compat_align()``, ``OSError(ENXIO)`` for mode ``none`` or when
    nothing would be left for data.
    """
    compat = memremap_compat_align(arch)
    eff_align = max(align, compat)
    if ns_start % compat:
        raise OSError(errno.EINVAL,
                      f"namespace start {ns_start:#x} misaligned to {compat:#x}")
    npfns = (ns_size - INFO_BLOCK_RESERVE) // arch.page_size
    end = ns_start + ns_size
    end_trunc = end - _align_down(end, eff_align)
    mode = int(mode)
    if mode == PfnMode.PMEM:
        if arch.struct_page_size > MAX_STRUCT_PAGE_SIZE:
            raise OSError(errno.EINVAL, "struct page too large for an on-media memmap")
        memmap = MAX_STRUCT_PAGE_SIZE * npfns
        dataoff = _align_up(ns_start + INFO_BLOCK_RESERVE + memmap, eff_align) - ns_start
    elif mode == PfnMode.RAM:
        dataoff = _align_up(ns_start + INFO_BLOCK_RESERVE, eff_align) - ns_start
    else:
        raise OSError(errno.ENXIO, "pfn mode not set")
    if dataoff >= ns_size - end_trunc:
        raise OSError(errno.ENXIO, "unable to satisfy requested alignment")
    npfns = (ns_size - dataoff - end_trunc) // arch.page_size
    return PfnLayout(ns_start, ns_size, 0, end_trunc, dataoff, npfns)


def new_info_block(*, dax: bool, uuid: uuidlib.UUID, parent_uuid: uuidlib.UUID | None,
                   align: int, mode: PfnMode | int, ns_start: int, ns_size: int,
                   arch: Arch = X86_64) -> PfnSuperblock:
    """The info block ``nd_pfn_init`` writes for a device without one.

    ``align`` is the device's configured alignment and is recorded as is,
    even when the layout used a larger effective alignment.
    """
    lay = compute_layout(ns_start, ns_size, align=align, mode=mode, arch=arch)
    sb = PfnSuperblock(
        signature=DAX_SIG if dax else PFN_SIG,
        uuid=uuid,
        parent_uuid=parent_uuid or NULL_UUID,
        version_major=VERSION_MAJOR,
        version_minor=VERSION_MINOR,
        dataoff=lay.dataoff,
        npfns=lay.npfns,
        mode=int(mode),
        start_pad=lay.start_pad,
        end_trunc=lay.end_trunc,
        align=align,
        page_size=arch.page_size,
        page_struct_size=MAX_STRUCT_PAGE_SIZE,
    )
    sb.checksum = sb_checksum(sb.encode(checksum=0))
    return sb


# --------------------------------------------------------------------------
# validation (nd_pfn_validate)


def validate(raw: bytes, *, sig: bytes, parent_uuid: uuidlib.UUID | None,
             ns_start: int, ns_size: int, uuid: uuidlib.UUID | None = None,
             align: int = 0, mode: PfnMode | int = PfnMode.NONE,
             region_is_memory: bool = True, arch: Arch = X86_64) -> int:
    """Check an info block the way ``nd_pfn_validate`` does; 0 or -errno.

    ``raw`` is the 4 KiB read from namespace offset 4096, or ``None`` when
    that read failed.  ``uuid=None`` is the probe path (a device being
    discovered adopts the block's uuid, align and mode); with a uuid the
    device's configured ``align`` and ``mode`` must match the block.

    * ``-ENODEV``: region is not pmem/volatile, wrong signature, bad
      checksum, parent uuid differs from the namespace's, uuid differs
      (the caller treats this as "no info block": initialize a fresh one);
    * ``-ENXIO``: read failed, mode is neither ram nor pmem;
    * ``-EOPNOTSUPP``: page size or struct page size incompatible (pmem
      mode), unsupported alignment (dax only), align/mode differ from the
      device's, alignment larger than the namespace, data offset outside the
      namespace or misaligned, namespace start/end not aligned to
      ``memremap_compat_align()``.
    """
    if not region_is_memory:
        return -errno.ENODEV
    if raw is None or len(raw) < INFO_BLOCK_SIZE:
        return -errno.ENXIO
    sb = PfnSuperblock.decode(raw)
    if sb.signature != sig:
        return -errno.ENODEV
    if not sb.checksum_ok():
        return -errno.ENODEV
    if sb.parent_uuid != (parent_uuid or NULL_UUID):
        return -errno.ENODEV

    sb = sb.normalized(arch)
    if sb.mode not in (PfnMode.RAM, PfnMode.PMEM):
        return -errno.ENXIO

    sb_align = sb.effective_align()
    offset = sb.dataoff
    if sb.mode == PfnMode.PMEM:
        if sb.page_size > arch.page_size:
            return -errno.EOPNOTSUPP
        if sb.page_struct_size < arch.struct_page_size:
            return -errno.EOPNOTSUPP
    if sig == DAX_SIG and sb_align not in supported_alignments(arch):
        return -errno.EOPNOTSUPP

    if uuid is not None:
        if sb.uuid != uuid:
            return -errno.ENODEV
        if align != sb_align or int(mode) != sb.mode:
            return -errno.EOPNOTSUPP

    if sb_align > ns_size:
        return -errno.EOPNOTSUPP
    if offset >= ns_size:
        return -errno.EOPNOTSUPP
    if (sb_align and (ns_start + offset + sb.start_pad) % sb_align) or offset % arch.page_size:
        return -errno.EOPNOTSUPP
    compat = memremap_compat_align(arch)
    if (ns_start + sb.start_pad) % compat:
        return -errno.EOPNOTSUPP
    if (ns_start + ns_size - sb.end_trunc) % compat:
        return -errno.EOPNOTSUPP
    if offset >= ns_size - sb.start_pad - sb.end_trunc:
        return -errno.EOPNOTSUPP
    return 0


# --------------------------------------------------------------------------
# operations on media


def read_info_block(io) -> bytes | None:
    """The 4 KiB at namespace offset 4096, or None if the read fails."""
    try:
        data = io.read(INFO_BLOCK_OFFSET, INFO_BLOCK_SIZE)
    except OSError:
        return None
    return bytes(data)


def probe(io, *, dax: bool, parent_uuid: uuidlib.UUID | None, ns_start: int,
          ns_size: int, region_is_memory: bool = True,
          arch: Arch = X86_64) -> PfnSuperblock | None:
    """Auto-detection at region enable (``nd_pfn_probe`` / ``nd_dax_probe``).

    Returns the normalized info block when the namespace carries a valid one
    of the requested kind (the new device takes its uuid, ``align`` via
    :meth:`PfnSuperblock.effective_align` and ``mode`` from it), else None.
    Raises ``OSError(EOPNOTSUPP)`` for a block of this namespace that this
    kernel cannot use (alignment, page sizes, geometry): nd_pmem_probe()
    then fails rather than expose the data as a raw disk.  Checking the
    namespace's claim class and ``force_raw`` is the caller's job.
    """
    raw = read_info_block(io)
    rc = validate(raw, sig=DAX_SIG if dax else PFN_SIG, parent_uuid=parent_uuid,
                  ns_start=ns_start, ns_size=ns_size,
                  region_is_memory=region_is_memory, arch=arch)
    if rc == -errno.EOPNOTSUPP:
        raise OSError(errno.EOPNOTSUPP, "info block unusable by this kernel")
    if rc:
        return None
    return PfnSuperblock.decode(raw).normalized(arch)


def setup(io, *, dax: bool, uuid: uuidlib.UUID | None, mode: PfnMode | int, align: int,
          parent_uuid: uuidlib.UUID | None, ns_start: int, ns_size: int,
          read_only: bool = False, region_is_memory: bool = True,
          arch: Arch = X86_64) -> PfnSuperblock:
    """Bind-time setup of a pfn/dax device (``nvdimm_setup_pfn``).

    Uses a matching existing info block, or writes a fresh one when there is
    none (validation said -ENODEV).  Returns the normalized info block the
    device then reports ``resource``/``size`` from.  Raises ``OSError``:
    ENODEV without uuid, ENXIO on a read-only region needing a new block,
    and whatever :func:`validate` / :func:`compute_layout` reject.
    """
    if uuid is None:
        raise OSError(errno.ENODEV, "pfn device has no uuid")
    sig = DAX_SIG if dax else PFN_SIG
    raw = read_info_block(io)
    rc = validate(raw, sig=sig, parent_uuid=parent_uuid, ns_start=ns_start,
                  ns_size=ns_size, uuid=uuid, align=align, mode=mode,
                  region_is_memory=region_is_memory, arch=arch)
    if rc == 0:
        return PfnSuperblock.decode(raw).normalized(arch)
    if rc != -errno.ENODEV:
        raise OSError(-rc, "existing info block rejected")
    if read_only:
        raise OSError(errno.ENXIO, "region is read-only, unable to init metadata")
    sb = new_info_block(dax=dax, uuid=uuid, parent_uuid=parent_uuid, align=align,
                        mode=mode, ns_start=ns_start, ns_size=ns_size, arch=arch)
    io.write(INFO_BLOCK_OFFSET, sb.encode())
    return sb
