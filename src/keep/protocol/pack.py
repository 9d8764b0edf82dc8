"""Pack objects: many sealed blobs, a sealed table of contents, a sealed footer
(docs/format.md §7 "Pack").

    header (40 bytes, kind PACK)
    blob frames      frame i = seal(i, payload_i, ad(BLOB, i, type, codec, id))
    TOC frame        frame n = seal(n, u32 len || msgpack TOC || zero padding, ad(TOC, n))
    footer frame     seal(2**64-1, u64 toc_offset || u64 toc_sealed_length, ad(FOOTER))

The padding inside the TOC frame brings the pack to its padded size (PADMÉ with a
floor), and the footer has a fixed size, so the server sees one opaque run of
bytes of a padded length: neither the number of blobs nor any blob's length.

`PackWriter` is pure: salt and buffers come in, bytes go out. `PackReader`
checks every length before it slices and raises only `FormatError` or
`IntegrityError`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple, Self

from keep.protocol import msgcodec
from keep.protocol.blob import BLOB_ID_SIZE, BlobType, verify_blob_id
from keep.protocol.compression import BlobDecompressor, Codec
from keep.protocol.envelope import (
    FOOTER_FRAME,
    HEADER,
    TAG_SIZE,
    Header,
    ObjectCipher,
    ObjectKind,
    Role,
    frame_ad,
)
from keep.protocol.errors import FormatError, IntegrityError
from keep.protocol.keys import DataKey, IdKey
from keep.protocol.limits import BLOB_RAW_MAX, PACK_MAX, PACK_MAX_BLOBS, TREE_RAW_MAX
from keep.protocol.padding import padded_pack_size

TOC_VERSION = 1
TOC_LENGTH = struct.Struct(">I")  # msgpack TOC length inside the TOC frame
FOOTER = struct.Struct(
    ">Q"  # offset of the TOC frame from the start of the pack
    "Q"  # sealed length of the TOC frame
    "I"  # number of blobs, which is also the TOC's frame number
)
FOOTER_SEALED_SIZE = FOOTER.size + TAG_SIZE
RAW_LIMIT = {BlobType.DATA: BLOB_RAW_MAX, BlobType.TREE: TREE_RAW_MAX}
BLOB_TYPES = {int(t): t for t in BlobType}  # the enum member for each value, without Enum's call
CODECS = {int(c): c for c in Codec}


class TocEntry(NamedTuple):
    """Where one blob sits in its pack. `frame` is its position in the TOC.
    A named tuple: one is built per blob sealed and per index entry loaded."""

    blob_type: BlobType
    blob_id: bytes
    codec: Codec
    offset: int
    length: int  # sealed length, tag included
    raw_length: int  # plaintext length after decompression
    frame: int

    def to_list(self) -> tuple[object, ...]:
        """The encoded fields (all but `frame`, which is the position): a
        slice of the tuple, whose enums msgpack writes as the ints they are."""
        return self[:6]

    @classmethod
    def from_list(cls, value: object, frame: int) -> Self:
        """Decode and validate one entry. Loading the index decodes one per
        blob in the repository, so the decision is one combined test (the
        field-by-field helpers cost 3.5 of 4.5 µs per entry); `checked_entry`
        names the field when it fails and is the reference it must agree with."""
        if type(value) is list and len(value) == 6:
            kind, blob_id, codec, offset, length, raw_length = value
            blob_type = BLOB_TYPES.get(kind) if type(kind) is int else None
            codec_value = CODECS.get(codec) if type(codec) is int else None
            if (
                blob_type is not None
                and codec_value is not None
                and type(blob_id) is bytes
                and len(blob_id) == BLOB_ID_SIZE
                and type(offset) is type(length) is type(raw_length) is int
                and HEADER.size <= offset <= PACK_MAX
                and TAG_SIZE <= length <= PACK_MAX
                and 0 <= raw_length <= RAW_LIMIT[blob_type]
            ):
                return cls(blob_type, blob_id, codec_value, offset, length, raw_length, frame)
        return cls.checked_entry(value, frame)

    @classmethod
    def checked_entry(cls, value: object, frame: int) -> Self:
        """`from_list` field by field: raises a `FormatError` naming the first bad field."""
        fields = msgcodec.as_list(value, "TOC entry", 6)
        try:
            blob_type = BlobType(msgcodec.as_int(fields[0], "blob type", 0, 255))
            codec = Codec(msgcodec.as_int(fields[2], "codec", 0, 255))
        except ValueError:
            raise FormatError("TOC entry has an unknown blob type or codec") from None
        raw_length = msgcodec.as_int(fields[5], "raw length", 0, RAW_LIMIT[blob_type])
        return cls(
            blob_type,
            msgcodec.as_bytes(fields[1], "blob id", BLOB_ID_SIZE),
            codec,
            msgcodec.as_int(fields[3], "offset", HEADER.size, PACK_MAX),
            msgcodec.as_int(fields[4], "length", TAG_SIZE, PACK_MAX),
            raw_length,
            frame,
        )

    def ad(self) -> bytes:
        return frame_ad(ObjectKind.PACK, Role.BLOB, self.frame, self.blob_type, self.codec, self.blob_id)


def _uint_len(value: int) -> int:
    """Bytes msgpack encodes a non-negative int in."""
    if value < 0x80:
        return 1
    return 2 if value < 0x100 else 3 if value < 0x10000 else 5 if value < 1 << 32 else 9


# An encoded TOC entry apart from its offset, length and raw length: a
# 6-array, the blob type and codec as fixints, the id as bin 8 of 32 bytes.
_ENTRY_FIXED = 1 + 1 + 2 + BLOB_ID_SIZE + 1


class PackWriter:
    """Seals the blobs of one pack as a stream: the caller writes `header`,
    then each frame `add` returns, then the tail `finish` returns — in memory,
    to a file, or to a socket. The writer itself keeps only the TOC entries.
    Not thread-safe."""

    __slots__ = ("_cipher", "_entries", "_entries_len", "_offset")

    def __init__(self, cipher: ObjectCipher) -> None:
        if cipher.header.kind is not ObjectKind.PACK:
            raise FormatError("a pack writer needs a PACK cipher")
        self._cipher = cipher
        self._entries: list[TocEntry] = []
        self._entries_len = 0  # bytes of the encoded TOC entries, counted as they are added
        self._offset = HEADER.size

    @property
    def header(self) -> bytes:
        return self._cipher.header.to_bytes()

    @property
    def size(self) -> int:
        """Bytes produced so far (header and sealed blobs)."""
        return self._offset

    @property
    def blob_count(self) -> int:
        return len(self._entries)

    @property
    def entries(self) -> tuple[TocEntry, ...]:
        return tuple(self._entries)

    def add(
        self,
        blob_type: BlobType,
        blob_id: bytes,
        codec: Codec,
        payload: bytes | memoryview,
        raw_length: int,
    ) -> bytes:
        """Seal one blob; returns the frame, which goes right after the previous one."""
        if len(self._entries) >= PACK_MAX_BLOBS:
            raise FormatError("pack is full")
        entry = TocEntry(
            blob_type,
            blob_id,
            codec,
            self._offset,
            len(payload) + TAG_SIZE,
            raw_length,
            len(self._entries),
        )
        sealed = self._cipher.seal(entry.frame, payload, entry.ad())
        self._entries.append(entry)
        self._entries_len += (
            _ENTRY_FIXED + _uint_len(entry.offset) + _uint_len(entry.length) + _uint_len(raw_length)
        )
        self._offset += len(sealed)
        return sealed

    def padding(self, pad_floor: int) -> int:
        """The zero bytes `finish` would add to pad the pack if it were
        finished now: what sealing more blobs first could use instead."""
        unpadded = self._unpadded_size(self._toc_len())
        return padded_pack_size(unpadded, pad_floor) - unpadded

    def _toc_len(self) -> int:
        """len(msgcodec.pack([TOC_VERSION, entries])), without encoding them:
        a 2-array, a fixint, the entries' array header, the entries."""
        count = len(self._entries)
        return 2 + (1 if count < 16 else 3 if count < 1 << 16 else 5) + self._entries_len

    def _unpadded_size(self, toc_len: int) -> int:
        return self._offset + TAG_SIZE + TOC_LENGTH.size + toc_len + FOOTER_SEALED_SIZE

    def finish(self, pad_floor: int) -> bytes:
        """The sealed TOC and footer that end the pack, padded so the whole
        pack is `padded_pack_size` bytes."""
        toc = msgcodec.pack([TOC_VERSION, [e.to_list() for e in self._entries]])
        toc_frame = len(self._entries)
        unpadded = self._unpadded_size(len(toc))
        padding = padded_pack_size(unpadded, pad_floor) - unpadded
        if unpadded + padding > PACK_MAX:
            raise FormatError("pack exceeds the maximum pack size")
        toc_plain = TOC_LENGTH.pack(len(toc)) + toc + bytes(padding)
        sealed_toc = self._cipher.seal(toc_frame, toc_plain, frame_ad(ObjectKind.PACK, Role.TOC, toc_frame))
        footer = FOOTER.pack(self._offset, len(sealed_toc), toc_frame)
        sealed_footer = self._cipher.seal(
            FOOTER_FRAME, footer, frame_ad(ObjectKind.PACK, Role.FOOTER, FOOTER_FRAME)
        )
        return sealed_toc + sealed_footer


def write_pack(
    cipher: ObjectCipher,
    blobs: Iterable[tuple[BlobType, bytes, Codec, bytes | memoryview, int]],
    pad_floor: int,
) -> bytes:
    """A whole pack in memory: (type, id, codec, payload, raw length) per blob."""
    writer = PackWriter(cipher)
    parts = [writer.header]
    parts += [writer.add(*blob) for blob in blobs]
    parts.append(writer.finish(pad_floor))
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class PackReader:
    """Reads the TOC and blobs of one pack whose bytes are all at hand."""

    cipher: ObjectCipher
    entries: tuple[TocEntry, ...]

    @classmethod
    def open(cls, data_key: DataKey, data: bytes | memoryview) -> Self:
        if len(data) > PACK_MAX:
            raise FormatError("pack is larger than the maximum pack size")
        header = Header.from_bytes(data)
        if header.kind is not ObjectKind.PACK:
            raise IntegrityError(f"expected a pack, found a {header.kind.path_name} object")
        cipher = ObjectCipher(data_key, header)
        if len(data) < HEADER.size + FOOTER_SEALED_SIZE:
            raise FormatError("pack is too short for its footer")
        view = memoryview(data)
        footer = cipher.open(
            FOOTER_FRAME,
            view[len(data) - FOOTER_SEALED_SIZE :],
            frame_ad(ObjectKind.PACK, Role.FOOTER, FOOTER_FRAME),
        )
        toc_offset, toc_length, count = FOOTER.unpack(footer)
        if (
            toc_offset < HEADER.size
            or toc_length < TAG_SIZE + TOC_LENGTH.size
            or toc_offset + toc_length != len(data) - FOOTER_SEALED_SIZE
        ):
            raise FormatError("pack footer points outside the pack")
        if count > PACK_MAX_BLOBS:
            raise FormatError("pack footer announces too many blobs")
        sealed_toc = view[toc_offset : toc_offset + toc_length]
        return cls(cipher, parse_toc(cipher, sealed_toc, toc_offset, count))

    def blob(
        self,
        entry: TocEntry,
        data: bytes | memoryview,
        id_key: IdKey,
        decompressor: BlobDecompressor,
    ) -> bytes:
        """Decrypt, decompress and verify one blob of this pack."""
        sealed = memoryview(data)[entry.offset : entry.offset + entry.length]
        return open_blob(self.cipher, entry, sealed, id_key, decompressor)


def parse_toc(
    cipher: ObjectCipher, sealed: bytes | memoryview, toc_offset: int, count: int
) -> tuple[TocEntry, ...]:
    """Decrypt and validate a TOC frame whose footer announced `count` blobs."""
    plain = cipher.open(count, sealed, frame_ad(ObjectKind.PACK, Role.TOC, count))
    if len(plain) < TOC_LENGTH.size:
        raise FormatError("TOC frame is too short")
    (length,) = TOC_LENGTH.unpack_from(plain)
    body = plain[TOC_LENGTH.size : TOC_LENGTH.size + length]
    if len(body) != length or any(plain[TOC_LENGTH.size + length :]):
        raise FormatError("TOC length or padding is malformed")
    version, raw_entries = msgcodec.as_list(msgcodec.unpack(body, PACK_MAX), "TOC", 2)
    if version != TOC_VERSION:
        raise FormatError(f"unsupported TOC version {version}")
    raw_entries = msgcodec.as_list(raw_entries, "TOC entries")
    if len(raw_entries) != count:
        raise FormatError("TOC entry count does not match the footer")
    entries = tuple(TocEntry.from_list(e, i) for i, e in enumerate(raw_entries))
    expected = HEADER.size
    for entry in entries:
        if entry.offset != expected:
            raise FormatError("TOC entries are not contiguous")
        expected += entry.length
    if expected != toc_offset:
        raise FormatError("TOC entries do not end where the TOC begins")
    return entries


def open_blob(
    cipher: ObjectCipher,
    entry: TocEntry,
    sealed: bytes | memoryview,
    id_key: IdKey,
    decompressor: BlobDecompressor,
) -> bytes:
    """Authenticate, decompress and re-hash one blob frame. A frame from another
    pack, position, type or codec fails the tag; content that does not match its
    id fails `verify_blob_id`. Neither check can be switched off."""
    return open_blob_payload(cipher, entry, sealed, id_key, decompressor)[1]


def open_blob_payload(
    cipher: ObjectCipher,
    entry: TocEntry,
    sealed: bytes | memoryview,
    id_key: IdKey,
    decompressor: BlobDecompressor,
) -> tuple[bytes, bytes]:
    """`open_blob`, also returning the stored (compressed) payload, so that a
    verified blob can be re-sealed elsewhere without compressing it again."""
    if len(sealed) != entry.length:
        raise FormatError("blob frame is truncated")
    payload = cipher.open(entry.frame, sealed, entry.ad())
    data = decompressor.decompress(entry.codec, payload, entry.raw_length, RAW_LIMIT[entry.blob_type])
    verify_blob_id(id_key, entry.blob_id, data)
    return payload, data
