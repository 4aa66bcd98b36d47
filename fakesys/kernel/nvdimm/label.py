"""On-media namespace label area ("LSA", DIMM config data).

Counterpart of drivers/nvdimm/label.c.  Everything here is plain bytes
in, bytes out: a DIMM's config data area is reached through an object with
``read``/``write`` and ``config_size`` (the GET/SET_CONFIG_DATA commands),
so the same code serves the emulated kernel, topology builders that
pre-initialize DIMMs and tests.  The interleave-set cookies labels carry
are computed by the NFIT (acpi/nfit.py) and chosen by the region
(``InterleaveSet.cookie``).

Layout of the area (all little-endian)::

    0          index block 0    (index_size bytes)
    index_size index block 1
    2*index_size  label slot 0, 1, ... nslot-1   (label_size bytes each)

Two index blocks alternate: an update edits the *next* index (a copy of the
current one), writes the new labels into slots that index marks free, then
writes the next index with the following sequence number, which makes it
current.  Labels are never rewritten in place.  ``LabelArea`` keeps the
kernel's in-memory copy (``nvdimm_drvdata.data``) and issues the same
SET_CONFIG_DATA writes in the same order and size as the kernel, so an
interrupted sequence leaves the media exactly as a crashed kernel would.
"""

from __future__ import annotations

import errno
import struct
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Iterable, Protocol, Sequence, runtime_checkable

__all__ = [
    "NSINDEX_SIGNATURE", "NSINDEX_ALIGN", "NSINDEX_HEADER_SIZE", "NSINDEX_SEQ_MASK",
    "PROBE_LABEL_SIZES",
    "NSLABEL_FLAG_ROLABEL", "NSLABEL_FLAG_LOCAL", "NSLABEL_FLAG_BTT",
    "NSLABEL_FLAG_UPDATING", "NSLABEL_NAME_LEN", "NSLABEL_UUID_LEN",
    "NULL_GUID", "NVDIMM_BTT_GUID", "NVDIMM_BTT2_GUID", "NVDIMM_PFN_GUID",
    "NVDIMM_DAX_GUID", "CLAIM_CLASS_GUIDS",
    "fletcher64", "nd_inc_seq", "best_seq",
    "LabelGeometry", "sizeof_namespace_index", "num_label_slots", "label_geometry",
    "NamespaceIndex", "NamespaceLabel", "InterleaveSetView", "PmemLabelSpec",
    "decode_index", "decode_label", "encode_label",
    "ConfigDataIO", "LabelError", "LabelArea",
    "ndctl_init_labels", "pmem_namespace_label_update",
]

# --------------------------------------------------------------------------
# constants (label.h, include/uapi/linux/ndctl.h, include/linux/nd.h)

NSINDEX_SIGNATURE = b"NAMESPACE_INDEX\0"
NSINDEX_ALIGN = 256
NSINDEX_HEADER_SIZE = 72          # sizeof(struct nd_namespace_index) without free[]
NSINDEX_SEQ_MASK = 0x3
NSLABEL_UUID_LEN = 16
NSLABEL_NAME_LEN = 64

NSLABEL_FLAG_ROLABEL = 0x1
NSLABEL_FLAG_LOCAL = 0x2
NSLABEL_FLAG_BTT = 0x4
NSLABEL_FLAG_UPDATING = 0x8

#: Label sizes the kernel probes for, in probing order (nd_label_validate).
PROBE_LABEL_SIZES = (128, 256)

# GUID-typed label fields (type_guid, abstraction_guid) are guid_t on media,
# i.e. the first three groups little-endian: we keep them as uuid.UUID and
# convert with bytes_le.  The namespace uuid itself is a uuid_t (bytes in
# string order) and converts with .bytes.
NULL_GUID = uuidlib.UUID(int=0)
NVDIMM_BTT_GUID = uuidlib.UUID("8aed63a2-29a2-4c66-8b12-f05d15d3922a")
NVDIMM_BTT2_GUID = uuidlib.UUID("18633bfc-1735-4217-8ac9-17239282d3f8")
NVDIMM_PFN_GUID = uuidlib.UUID("266400ba-fb9f-4677-bcb0-968f11d0d225")
NVDIMM_DAX_GUID = uuidlib.UUID("97a86d9c-3cdd-4eda-986f-5068b4f80088")

#: abstraction_guid written for a namespace claim class (holder_class).
CLAIM_CLASS_GUIDS: dict[str, uuidlib.UUID] = {
    "": NULL_GUID,
    "btt": NVDIMM_BTT_GUID,
    "btt2": NVDIMM_BTT2_GUID,
    "pfn": NVDIMM_PFN_GUID,
    "dax": NVDIMM_DAX_GUID,
}

_U32 = 0xFFFF_FFFF
_U64 = 0xFFFF_FFFF_FFFF_FFFF

# struct nd_namespace_index up to (not including) free[]
_INDEX = struct.Struct("<16s3sBIQQQQIHHQ")
_INDEX_CHECKSUM_OFF = 64
# struct nvdimm_efi_label: v1.1 part (first 128 bytes) and v1.2 tail
_LABEL_V11 = struct.Struct("<16s64sIHHQQQQIB3x")
_LABEL_TYPE_GUID_OFF = 128
_LABEL_ABSTRACTION_GUID_OFF = 144
_LABEL_CHECKSUM_OFF = 248        # only for 256-byte (v1.2) labels

assert _INDEX.size == NSINDEX_HEADER_SIZE
assert _LABEL_V11.size == 128


# --------------------------------------------------------------------------
# checksums and sequence numbers


def fletcher64(data: bytes | bytearray | memoryview, le: bool = True) -> int:
    """Fletcher-64 over 32-bit words, as nd_fletcher64() computes it.

    The low half is the running 32-bit sum of the words, the high half the
    (truncated) sum of those running sums.  Trailing bytes that do not fill
    a word are ignored, like the kernel does.

    ``le`` selects how words are loaded: ``True`` converts from
    little-endian (what index blocks, labels and info blocks use);
    ``False`` takes them in CPU order, which the NFIT cookie computation
    uses.  The emulated kernel is x86-64, so both load little-endian words
    and give the same result; the flag is kept so callers state which
    variant the kernel used.
    """
    view = memoryview(data).cast("B")
    nwords = len(view) // 4
    lo = 0
    hi = 0
    for (word,) in struct.iter_unpack("<I", view[: nwords * 4]):
        lo = (lo + word) & _U32
        hi += lo
    return ((hi << 32) | lo) & _U64


def nd_inc_seq(seq: int) -> int:
    """Next index sequence number: 1 -> 2 -> 3 -> 1 (0 stays invalid)."""
    return (0, 2, 3, 1)[seq & NSINDEX_SEQ_MASK]


def best_seq(a: int, b: int) -> int:
    """The newer of two index sequence numbers (b wins ties and zero a)."""
    a &= NSINDEX_SEQ_MASK
    b &= NSINDEX_SEQ_MASK
    if a == 0 or a == b:
        return b
    if b == 0:
        return a
    return b if nd_inc_seq(a) == b else a


# --------------------------------------------------------------------------
# geometry


def _align(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def _index_size_for(nslot: int) -> int:
    return _align(NSINDEX_HEADER_SIZE + (nslot + 7) // 8, NSINDEX_ALIGN)


def num_label_slots(config_size: int, label_size: int) -> int:
    """Label slots in an area (nvdimm_num_label_slots).

    The index size is first estimated as if the whole area were slots, then
    the slots are what is left after two index blocks of that size.
    """
    rough = config_size // label_size
    index_size = _index_size_for(rough)
    return max((config_size - 2 * index_size) // label_size, 0)


def sizeof_namespace_index(config_size: int, label_size: int) -> int:
    """Size of one index block, or 0 if the area cannot hold two index
    blocks and at least two labels of ``label_size``."""
    nslot = num_label_slots(config_size, label_size)
    space = config_size - nslot * label_size
    size = _index_size_for(nslot)
    if 2 * size <= space and nslot >= 2:
        return size
    return 0


@dataclass(frozen=True)
class LabelGeometry:
    """Where things live in a label area for one label size."""

    label_size: int
    index_size: int
    nslot: int

    @property
    def label_offset(self) -> int:
        """Offset of slot 0 (the index ``labeloff`` field)."""
        return 2 * self.index_size

    @property
    def version(self) -> tuple[int, int]:
        """(major, minor) the kernel writes for this label size."""
        return (1, 1) if self.label_size < 256 else (1, 2)

    def slot_offset(self, slot: int) -> int:
        return self.label_offset + slot * self.label_size


def label_geometry(config_size: int, label_size: int) -> LabelGeometry | None:
    """Geometry for ``label_size`` (128 = v1.1, 256 = v1.2), or None when
    the area is too small.  128 KiB: index 256, 1020 slots of 128 bytes or
    510 of 256, labels from 0x200."""
    index_size = sizeof_namespace_index(config_size, label_size)
    if not index_size:
        return None
    return LabelGeometry(label_size, index_size, num_label_slots(config_size, label_size))


# --------------------------------------------------------------------------
# decoded structures


@dataclass(frozen=True)
class NamespaceIndex:
    """One decoded index block (struct nd_namespace_index)."""

    sig: bytes
    flags: bytes
    labelsize: int
    seq: int
    myoff: int
    mysize: int
    otheroff: int
    labeloff: int
    nslot: int
    major: int
    minor: int
    checksum: int
    free: bytes = field(repr=False)

    @property
    def version(self) -> int:
        """major*100 + minor, how the kernel compares versions."""
        return self.major * 100 + self.minor

    def is_free(self, slot: int) -> bool:
        return bool(self.free[slot >> 3] >> (slot & 7) & 1)


def decode_index(block: bytes) -> NamespaceIndex:
    """Decode an index block (at least 72 bytes; free[] is the rest)."""
    (sig, flags, labelsize, seq, myoff, mysize, otheroff, labeloff, nslot,
     major, minor, checksum) = _INDEX.unpack_from(block, 0)
    return NamespaceIndex(sig, flags, labelsize, seq, myoff, mysize, otheroff,
                          labeloff, nslot, major, minor, checksum,
                          bytes(block[NSINDEX_HEADER_SIZE:]))


@dataclass(frozen=True)
class NamespaceLabel:
    """One decoded namespace label (struct nvdimm_efi_label).

    ``uuid`` is the namespace uuid; ``type_guid``/``abstraction_guid`` are
    GUIDs (see module notes) and read as NULL_GUID for 128-byte labels;
    ``checksum`` is 0 for 128-byte labels.
    """

    uuid: uuidlib.UUID
    name: str
    flags: int
    nlabel: int
    position: int
    isetcookie: int
    lbasize: int
    dpa: int
    rawsize: int
    slot: int
    align: int = 0
    type_guid: uuidlib.UUID = NULL_GUID
    abstraction_guid: uuidlib.UUID = NULL_GUID
    checksum: int = 0
    raw_name: bytes = field(default=b"\0" * NSLABEL_NAME_LEN, repr=False)

    @property
    def claim_class(self) -> str | None:
        """holder_class the abstraction_guid stands for (None: unknown)."""
        for name, guid in CLAIM_CLASS_GUIDS.items():
            if guid == self.abstraction_guid:
                return name
        return None


def decode_label(raw: bytes, label_size: int = 128) -> NamespaceLabel:
    """Decode a label of ``label_size`` bytes (fields past 128 only if 256)."""
    (uid, name, flags, nlabel, position, isetcookie, lbasize, dpa, rawsize,
     slot, align) = _LABEL_V11.unpack_from(raw, 0)
    type_guid = abstraction_guid = NULL_GUID
    checksum = 0
    if label_size >= 256:
        type_guid = uuidlib.UUID(bytes_le=bytes(raw[_LABEL_TYPE_GUID_OFF:_LABEL_TYPE_GUID_OFF + 16]))
        abstraction_guid = uuidlib.UUID(
            bytes_le=bytes(raw[_LABEL_ABSTRACTION_GUID_OFF:_LABEL_ABSTRACTION_GUID_OFF + 16]))
        (checksum,) = struct.unpack_from("<Q", raw, _LABEL_CHECKSUM_OFF)
    text = name.split(b"\0", 1)[0].decode("utf-8", "replace")
    return NamespaceLabel(uuidlib.UUID(bytes=uid), text, flags, nlabel, position,
                          isetcookie, lbasize, dpa, rawsize, slot, align,
                          type_guid, abstraction_guid, checksum, bytes(name))


class InterleaveSetView(Protocol):
    """What a label write needs of the region's interleave set
    (``region.InterleaveSet``): its choice of cookie for an index version.
    A protocol rather than an import, because the region imports label code
    through the DIMM and label code must not import the region back."""

    def cookie(self, index_version: tuple[int, int] | None) -> int: ...


@dataclass(frozen=True)
class PmemLabelSpec:
    """What one DIMM's label of a pmem namespace is made of.

    The kernel takes these from the namespace (uuid, alt_name, lbasize,
    claim class), the region (nlabel = number of mappings, interleave set,
    type_guid) and the DIMM's DPA allocation for this namespace (dpa,
    rawsize); ``position`` is the mapping's index in the region.  Which of
    the set's cookies lands in the label depends on the index version, so
    the set itself is carried and asked at write time; without one the
    cookie is 0, as the kernel writes for a region without a set.
    """

    uuid: uuidlib.UUID
    dpa: int
    rawsize: int
    nd_set: InterleaveSetView | None = None
    name: str | bytes = ""
    nlabel: int = 1
    position: int = 0
    lbasize: int = 0
    type_guid: uuidlib.UUID = NULL_GUID
    abstraction_guid: uuidlib.UUID = NULL_GUID

    def name_bytes(self) -> bytes:
        # a str holds the bytes written to alt_name (surrogateescape)
        raw = self.name.encode("utf-8", "surrogateescape") if isinstance(self.name, str) else bytes(self.name)
        raw = raw.split(b"\0", 1)[0]
        if len(raw) + 1 > NSLABEL_NAME_LEN:
            raise ValueError(f"alt_name longer than {NSLABEL_NAME_LEN - 1} bytes")
        return raw.ljust(NSLABEL_NAME_LEN, b"\0")


def encode_label(spec: PmemLabelSpec, *, slot: int, flags: int, isetcookie: int,
                 label_size: int) -> bytes:
    """Bytes of a label as __pmem_label_update() builds it: a zeroed slot,
    the v1.1 fields, and for 256-byte labels the type/abstraction GUIDs and
    the Fletcher-64 checksum.  ``align`` and reserved bytes stay zero."""
    buf = bytearray(label_size)
    _LABEL_V11.pack_into(buf, 0, spec.uuid.bytes, spec.name_bytes(), flags & _U32,
                         spec.nlabel & 0xFFFF, spec.position & 0xFFFF,
                         isetcookie & _U64, spec.lbasize & _U64, spec.dpa & _U64,
                         spec.rawsize & _U64, slot & _U32, 0)
    if label_size >= 256:
        buf[_LABEL_TYPE_GUID_OFF:_LABEL_TYPE_GUID_OFF + 16] = spec.type_guid.bytes_le
        buf[_LABEL_ABSTRACTION_GUID_OFF:_LABEL_ABSTRACTION_GUID_OFF + 16] = \
            spec.abstraction_guid.bytes_le
        struct.pack_into("<Q", buf, _LABEL_CHECKSUM_OFF, fletcher64(buf))
    return bytes(buf)


def _label_checksum_ok(raw: bytes | memoryview, label_size: int) -> bool:
    if label_size < 256:
        return True
    buf = bytearray(raw[:label_size])
    (saved,) = struct.unpack_from("<Q", buf, _LABEL_CHECKSUM_OFF)
    struct.pack_into("<Q", buf, _LABEL_CHECKSUM_OFF, 0)
    return fletcher64(buf) == saved


# --------------------------------------------------------------------------
# the area


@runtime_checkable
class ConfigDataIO(Protocol):
    """A DIMM's config data area as the label code reaches it.

    ``read``/``write`` are GET/SET_CONFIG_DATA; ``config_size`` is what
    GET_CONFIG_SIZE reports.  An optional integer attribute ``max_xfer``
    (GET_CONFIG_SIZE's max transfer) makes the commands split the way the
    kernel splits them; without it every transfer is one command.
    """

    config_size: int

    def read(self, offset: int, length: int) -> bytes: ...

    def write(self, offset: int, data: bytes) -> None: ...


class LabelError(OSError):
    """A label operation failed; ``errno`` is what the sysfs store returns."""


def _bit(buf: bytearray | bytes, base: int, nr: int) -> bool:
    return bool(buf[base + (nr >> 3)] >> (nr & 7) & 1)


def _free_bits(buf: bytearray | bytes, base: int, nslot: int) -> int:
    """Bits 0..nslot-1 of the bitmap at ``base`` as one integer (bit n = slot n)."""
    raw = bytes(buf[base:base + (nslot + 7) // 8]).ljust((nslot + 7) // 8, b"\0")
    return int.from_bytes(raw, "little") & ((1 << nslot) - 1)


def _set_bit(buf: bytearray, base: int, nr: int) -> None:
    buf[base + (nr >> 3)] |= 1 << (nr & 7)


def _clear_bit(buf: bytearray, base: int, nr: int) -> None:
    buf[base + (nr >> 3)] &= ~(1 << (nr & 7)) & 0xFF


class LabelArea:
    """One DIMM's label area as the nvdimm driver sees it (nvdimm_drvdata).

    Holds the in-memory copy the kernel works on, the label size found (or
    assumed), and which index is current / next.  :meth:`validate` loads it
    (the driver's probe); the update methods change memory and write
    through ``io``.  Writes made to the media behind the object's back (as
    ``ndctl init-labels`` does with SET_CONFIG_DATA ioctls) are only seen
    after the next :meth:`validate`, just like the kernel only sees them
    after the DIMM is re-probed.
    """

    def __init__(self, io: ConfigDataIO):
        self.io = io
        self.config_size: int = int(io.config_size)
        self._data: bytearray | None = None
        self._label_size = PROBE_LABEL_SIZES[0]
        self._current = -1
        self._next = -1

    # -- transfers ---------------------------------------------------------

    @property
    def max_xfer(self) -> int:
        mx = getattr(self.io, "max_xfer", None)
        return int(mx) if mx else self.config_size

    def _get_config_data(self, offset: int, length: int) -> bytes:
        step = max(1, min(length, self.max_xfer))
        out = bytearray()
        pos = 0
        while pos < length:
            n = min(step, length - pos)
            out += self.io.read(offset + pos, n)
            pos += n
        return bytes(out)

    def _set_config_data(self, offset: int, data: bytes) -> None:
        if offset + len(data) > self.config_size:
            raise LabelError(errno.ENXIO, "config data write past the end of the area")
        step = max(1, min(len(data), self.max_xfer))
        for pos in range(0, len(data), step):
            self.io.write(offset + pos, bytes(data[pos:pos + step]))

    # -- geometry of the current label size -------------------------------

    @property
    def label_size(self) -> int:
        """Label size in use: the validated one, 256 once probing failed."""
        return self._label_size

    @property
    def index_size(self) -> int:
        return sizeof_namespace_index(self.config_size, self._label_size)

    @property
    def geometry(self) -> LabelGeometry | None:
        return label_geometry(self.config_size, self._label_size)

    def _index_off(self, i: int) -> int:
        return i * self.index_size

    def _slot_off(self, slot: int) -> int:
        return 2 * self.index_size + slot * self._label_size

    @property
    def data(self) -> bytes:
        """The in-memory copy (free slots zeroed at load), for inspection."""
        self._ensure_loaded()
        assert self._data is not None
        return bytes(self._data)

    # -- state ------------------------------------------------------------

    @property
    def valid(self) -> bool:
        self._ensure_loaded()
        return self._current >= 0

    @property
    def current(self) -> int | None:
        """Number (0/1) of the current index, None without a valid index."""
        self._ensure_loaded()
        return self._current if self._current >= 0 else None

    @property
    def next(self) -> int | None:
        self._ensure_loaded()
        return self._next if self._next >= 0 else None

    def index(self, i: int) -> NamespaceIndex:
        """Decoded in-memory index block ``i`` (0 or 1)."""
        self._ensure_loaded()
        assert self._data is not None
        off = self._index_off(i)
        return decode_index(bytes(self._data[off:off + self.index_size]))

    @property
    def version(self) -> tuple[int, int] | None:
        """(major, minor) of the current index, None without one."""
        if not self.valid:
            return None
        idx = self.index(self._current)
        return idx.major, idx.minor

    @property
    def nslot(self) -> int:
        """Slots of the current index, or of a fresh area of this label size."""
        if self.valid:
            return self.index(self._current).nslot
        return num_label_slots(self.config_size, self._label_size)

    def _ensure_loaded(self) -> None:
        if self._data is None:
            self.validate()

    # -- probe ------------------------------------------------------------

    def _index_block_valid(self, i: int) -> bool:
        assert self._data is not None
        size = self.index_size
        if not size:
            return False
        off = self._index_off(i)
        block = bytearray(self._data[off:off + size])
        if len(block) < max(size, NSINDEX_HEADER_SIZE):
            return False
        idx = decode_index(block)
        if idx.sig != NSINDEX_SIGNATURE:
            return False
        labelsize = 1 << (7 + idx.labelsize) if idx.version >= 102 else 128
        if labelsize != self._label_size:
            return False
        block[_INDEX_CHECKSUM_OFF:_INDEX_CHECKSUM_OFF + 8] = bytes(8)
        if fletcher64(block) != idx.checksum:
            return False
        if idx.seq & NSINDEX_SEQ_MASK == 0:
            return False
        if idx.myoff != i * size or idx.otheroff != (1 - i) * size:
            return False
        if idx.labeloff != 2 * size:
            return False
        if idx.mysize > size or idx.mysize < NSINDEX_HEADER_SIZE:
            return False
        if idx.nslot * self._label_size + 2 * size > self.config_size:
            return False
        return True

    def _pick_index(self) -> int:
        valid = [self._index_block_valid(i) for i in (0, 1)]
        if valid == [True, True]:
            seq0 = self.index(0).seq
            seq1 = self.index(1).seq
            return 1 if best_seq(seq0, seq1) == seq1 & NSINDEX_SEQ_MASK else 0
        if valid[0]:
            return 0
        if valid[1]:
            return 1
        return -1

    def validate(self) -> bool:
        """(Re)load the area like the driver's probe and find the indexes.

        Mirrors nd_label_data_init(): read both index blocks (sized for
        128-byte labels, the largest index) in as few max_xfer-sized reads
        as possible, validate with 128-byte then 256-byte labels, copy the
        current index over the next one in memory, then read only the slots
        the current index marks in use; free slots stay zero in memory.
        Returns whether a valid index was found.  Without one, the label
        size is left at 256, which is what a later autolabel writes.
        """
        size = self.config_size
        self._data = bytearray(size)
        self._current = self._next = -1
        self._label_size = PROBE_LABEL_SIZES[0]
        read_size = 2 * sizeof_namespace_index(size, self._label_size)
        if not read_size:
            self._label_size = PROBE_LABEL_SIZES[-1]
            return False
        max_xfer = min(self.max_xfer, size)
        if read_size < max_xfer:
            max_xfer -= ((max_xfer - 1) - (size - 1) % max_xfer) // (-(-size // max_xfer))
            max_xfer = max(max_xfer, read_size)
        read_size = min(-(-read_size // max_xfer) * max_xfer, size)
        self._data[0:read_size] = self._get_config_data(0, read_size)

        for label_size in PROBE_LABEL_SIZES:
            self._label_size = label_size
            self._current = self._pick_index()
            if self._current >= 0:
                break
        if self._current < 0:
            return False
        self._next = 1 - self._current
        self._copy_index(self._current, self._next)

        cur = self.index(self._current)
        offset = cur.labeloff
        lsz = self._label_size
        for slot in range(cur.nslot):
            if cur.is_free(slot):
                if offset < read_size:  # read with the indexes; the rest is zero already
                    self._data[offset:offset + lsz] = bytes(lsz)
            elif offset + lsz > read_size:
                read_size = max(read_size, offset)
                chunk = -(-(offset + lsz - read_size) // max_xfer) * max_xfer
                chunk = min(chunk, size - read_size)
                self._data[read_size:read_size + chunk] = \
                    self._get_config_data(read_size, chunk)
                read_size += chunk
            offset += lsz
        return True

    def _copy_index(self, src: int, dst: int) -> None:
        assert self._data is not None
        size = self.index_size
        s, d = self._index_off(src), self._index_off(dst)
        self._data[d:d + size] = self._data[s:s + size]

    # -- reading labels ---------------------------------------------------

    def _slot_valid(self, slot: int) -> bool:
        assert self._data is not None
        off = self._slot_off(slot)
        raw = self._data[off:off + self._label_size]
        (found,) = struct.unpack_from("<I", raw, 120)
        return found == slot and _label_checksum_ok(raw, self._label_size)

    def _used_slots(self, which: int) -> list[int]:
        assert self._data is not None
        base = self._index_off(which) + NSINDEX_HEADER_SIZE
        nslot = self.index(which).nslot
        used = ~_free_bits(self._data, base, nslot) & ((1 << nslot) - 1)
        out = []
        while used:
            low = used & -used
            out.append(low.bit_length() - 1)
            used ^= low
        return out

    def labels(self) -> list[NamespaceLabel]:
        """Active labels of the current index, in slot order.

        A slot counts if the current index marks it in use, the label's own
        ``slot`` field names it, and (256-byte labels) its checksum holds.
        """
        if not self.valid:
            return []
        assert self._data is not None
        out = []
        for slot in self._used_slots(self._current):
            if self._slot_valid(slot):
                off = self._slot_off(slot)
                out.append(decode_label(bytes(self._data[off:off + self._label_size]),
                                        self._label_size))
        return out

    def nfree(self) -> int:
        """Free slots in the next index (nd_label_nfree).

        Only bits below ``nslot`` count, so the set bits ndctl leaves past
        the end of the bitmap do not.  Without an index this is the slot
        count of a fresh area of the current label size.
        """
        if not self.valid:
            return num_label_slots(self.config_size, self._label_size)
        assert self._data is not None
        base = self._index_off(self._next) + NSINDEX_HEADER_SIZE
        nslot = self.index(self._next).nslot
        return _free_bits(self._data, base, nslot).bit_count()

    def available_slots(self) -> int:
        """The DIMM's ``available_slots``: nfree - 1, never below 0.

        One free slot is always held back because an update writes the new
        label before it frees the old one.  With no valid index the label
        size is 256 after probing, so a blank 128 KiB area reports 509; a
        v1.1 area initialised by ndctl reports 1019.
        """
        return max(self.nfree() - 1, 0)

    # -- writing ----------------------------------------------------------

    def _write_index(self, which: int, seq: int, *, init: bool) -> None:
        """nd_label_write_index(): refresh the header of in-memory index
        ``which``, checksum it and write the whole block.  A normal write
        then makes ``which`` current and copies it over the other index in
        memory; an init write only writes."""
        assert self._data is not None
        size = self.index_size
        off = self._index_off(which)
        if init:
            nslot = num_label_slots(self.config_size, self._label_size)
        else:
            nslot = self.index(which).nslot
        major, minor = (1, 1) if self._label_size < 256 else (1, 2)
        _INDEX.pack_into(self._data, off, NSINDEX_SIGNATURE, bytes(3),
                         self._label_size >> 8, seq & _U32, off, size,
                         self._index_off(1 - which), 2 * size, nslot, major, minor, 0)
        if init:
            # every slot free; the bits up to the next 64-bit boundary that
            # lie past nslot are cleared (ndctl leaves them set)
            base = off + NSINDEX_HEADER_SIZE
            nbits = _align(nslot, 64)
            self._data[base:base + nbits // 8] = b"\xff" * (nbits // 8)
            for bit in range(nslot, nbits):
                _clear_bit(self._data, base, bit)
        checksum = fletcher64(self._data[off:off + size])
        struct.pack_into("<Q", self._data, off + _INDEX_CHECKSUM_OFF, checksum)
        self._set_config_data(off, bytes(self._data[off:off + size]))
        if init:
            return
        self._copy_index(which, self._current)
        self._current, self._next = self._next, self._current

    def init(self, label_size: int | None = None, *, force: bool = False) -> bool:
        """init_labels(): give an area without a valid index fresh indexes.

        Clears the in-memory copy, then writes index 0 (seq 3) and index 1
        (seq 2) with every slot free; index 0 is current.  Only the two
        index blocks are written: stale labels on the media stay where they
        are, unreachable because every slot is marked free.  Does nothing
        (returns False) when a valid index exists unless ``force``.
        ``label_size`` defaults to the probed size, which is 256 (v1.2) for
        an area where probing found nothing.
        """
        self._ensure_loaded()
        if self._current >= 0 and self._next >= 0 and not force:
            return False
        if label_size is not None:
            if label_size not in PROBE_LABEL_SIZES:
                raise ValueError(f"label size must be one of {PROBE_LABEL_SIZES}")
            self._label_size = label_size
        if not self.index_size:
            raise LabelError(errno.ENXIO, "label area too small for two indexes and two labels")
        self._data = bytearray(self.config_size)
        for i in (0, 1):
            self._write_index(i, 3 - i, init=True)
        self._current, self._next = 0, 1
        return True

    def ndctl_init(self, label_size: int = 128) -> None:
        """Initialise the area exactly as ``ndctl init-labels`` (76.1) does,
        then reload it as the DIMM re-probe after init-labels would.
        See :func:`ndctl_init_labels`."""
        ndctl_init_labels(self.io, label_size)
        self.validate()

    def _alloc_slot(self) -> int:
        assert self._data is not None
        base = self._index_off(self._next) + NSINDEX_HEADER_SIZE
        nslot = self.index(self._next).nslot
        for slot in range(nslot):
            if _bit(self._data, base, slot):
                _clear_bit(self._data, base, slot)
                return slot
        raise LabelError(errno.ENXIO, "no free label slot")

    def _free_slot(self, slot: int) -> None:
        assert self._data is not None
        base = self._index_off(self._next) + NSINDEX_HEADER_SIZE
        if slot < self.index(self._next).nslot:
            _set_bit(self._data, base, slot)

    def _active_slots_of(self, uuids: set[bytes]) -> list[int]:
        assert self._data is not None
        out = []
        for slot in self._used_slots(self._current):
            off = self._slot_off(slot)
            if bytes(self._data[off:off + 16]) in uuids and self._slot_valid(slot):
                out.append(slot)
        return out

    def update_pmem(self, spec: PmemLabelSpec, flags: int = 0,
                    reap: Iterable[uuidlib.UUID] = ()) -> int:
        """__pmem_label_update(): write this DIMM's label for a namespace.

        Takes the first slot the next index marks free, writes the label
        (one label-sized SET_CONFIG_DATA), frees every active label of the
        same uuid plus those of the uuids in ``reap`` (labels of a uuid the
        namespace was renamed from), then writes the next index with the
        following seq (one index-sized write), which becomes current.
        ``isetcookie`` is what the set chooses for the next index's version
        (``InterleaveSet.cookie``).  Returns the slot used.  Raises ENXIO
        without a valid index (callers go through
        :func:`pmem_namespace_label_update`, which initialises a blank area
        first) or when no slot is free.
        """
        self._ensure_loaded()
        if self._next < 0:
            raise LabelError(errno.ENXIO, "no namespace index")
        assert self._data is not None
        victims = self._active_slots_of({spec.uuid.bytes} | {u.bytes for u in reap})
        nxt = self.index(self._next)
        cookie = spec.nd_set.cookie((nxt.major, nxt.minor)) if spec.nd_set is not None else 0
        slot = self._alloc_slot()
        raw = encode_label(spec, slot=slot, flags=flags, isetcookie=cookie,
                           label_size=self._label_size)
        off = self._slot_off(slot)
        self._data[off:off + self._label_size] = raw
        self._set_config_data(off, raw)
        for victim in victims:
            self._free_slot(victim)
        self._write_index(self._next, nd_inc_seq(nxt.seq), init=False)
        return slot

    def delete(self, uuid: uuidlib.UUID) -> list[int]:
        """del_labels(): free every active label of ``uuid`` and write the
        next index.

        The index is written even when no label matched (the kernel does
        this whenever a namespace with a uuid but no size is written, e.g.
        for each ``uuid``/``alt_name`` store before ``size``).  Without an
        index nothing happens.  Returns the slots freed.
        """
        self._ensure_loaded()
        if self._next < 0:
            return []
        freed = self._active_slots_of({uuid.bytes})
        for slot in freed:
            self._free_slot(slot)
        self._write_index(self._next, nd_inc_seq(self.index(self._next).seq), init=False)
        return freed

    def __repr__(self) -> str:
        if self._data is None:
            return f"<LabelArea {self.config_size} bytes, not loaded>"
        if self._current < 0:
            return f"<LabelArea {self.config_size} bytes, no index>"
        return (f"<LabelArea {self.config_size} bytes, v{self.version[0]}.{self.version[1]}, "
                f"current {self._current}, nfree {self.nfree()}>")


def ndctl_init_labels(io: ConfigDataIO, label_size: int = 128) -> None:
    """Write fresh index blocks the way ``ndctl init-labels`` 76.1 does.

    ndctl edits the index blocks it read from the DIMM in place and writes
    each back with one SET_CONFIG_DATA: index 0 with seq 3, then index 1
    with seq 2 (v1.1 by default).  It sets the header fields and fills the
    free bitmap with 0xff up to the next 64-bit boundary, so the bits past
    ``nslot`` read as free; bytes of the block beyond that (and all label
    slots) keep whatever the media held.  The kernel's own init clears the
    bits past ``nslot`` instead.
    """
    config_size = int(io.config_size)
    geo = label_geometry(config_size, label_size)
    if geo is None:
        raise LabelError(errno.ENXIO, "label area too small")
    size = geo.index_size
    major, minor = geo.version
    for which, seq in ((0, 3), (1, 2)):
        off = which * size
        block = bytearray(io.read(off, size))
        _INDEX.pack_into(block, 0, NSINDEX_SIGNATURE, bytes(3), label_size >> 8, seq,
                         off, size, (1 - which) * size, 2 * size, geo.nslot, major,
                         minor, 0)
        nbytes = _align(geo.nslot, 64) // 8
        block[NSINDEX_HEADER_SIZE:NSINDEX_HEADER_SIZE + nbytes] = b"\xff" * nbytes
        struct.pack_into("<Q", block, _INDEX_CHECKSUM_OFF, fletcher64(block))
        mx = getattr(io, "max_xfer", None) or size
        for pos in range(0, size, mx):
            io.write(off + pos, bytes(block[pos:pos + mx]))


def pmem_namespace_label_update(mappings: Sequence[tuple[LabelArea, PmemLabelSpec]],
                                size: int, reap: Iterable[uuidlib.UUID] = ()) -> None:
    """nd_pmem_namespace_label_update(): rewrite a namespace's labels on
    every DIMM of its region, or delete them when ``size`` is 0.

    The one label update: the namespace attributes' stores reach it
    through ``namespace.label_update`` (nd_namespace_label_update()), and
    the unit tests call it directly.  ``mappings`` lists (area, spec) in
    region mapping order.  For a size, each DIMM in turn gets fresh indexes
    if it has none (autolabel, with the probed label size: v1.2 for a blank
    area) and a label flagged UPDATING; then every DIMM gets the final label
    with flags 0, reaping the UPDATING copy.  One size change on an N-way
    set thus costs 2N label writes and 2N index writes.  ``reap`` names
    uuids the namespace was renamed from: their labels go in the first pass,
    as the kernel reaps label entries marked ND_LABEL_REAP at a mapping's
    first update.  For size 0 each DIMM runs ``delete``.  Raises LabelError
    on the first failure, leaving earlier DIMMs updated, as the kernel does.
    """
    if size == 0:
        for area, spec in mappings:
            area.delete(spec.uuid)
        return
    renamed = set(reap)
    for area, spec in mappings:
        area.init()
        area.update_pmem(spec, NSLABEL_FLAG_UPDATING, reap=renamed)
    for area, spec in mappings:
        area.update_pmem(spec, 0)
