"""Per-blob compression with zstd, and bounded decompression
(docs/format.md §5 "Codecs").

Owns the codec byte (`Codec`), the "store raw when it does not pay" rule and the
decompression bound: a zstd frame that declares (or produces) more than the
caller's limit is refused before any large allocation.

Compressor objects are not thread-safe; each worker thread keeps its own
`BlobCompressor`.
"""

from __future__ import annotations

import enum
import struct

import zstandard

from keep.protocol.errors import FormatError
from keep.protocol.padding import padme

DEFAULT_LEVEL = 3  # trees, indexes, snapshots: small, and listed and restored often
# File data: level 1 by default (docs/format.md §5). On text it is 1.35-1.5x
# as fast as level 3 for 6.5% more compressed bytes, and zstd is most of a
# first backup's CPU time; the owner can choose any level in keep.toml.
DATA_LEVEL = 1
LEVEL_MIN = 1
LEVEL_MAX = 19
# Keep the compressed form only if it saves at least 1/32 of the input.
WORTHWHILE_NUMERATOR = 31
WORTHWHILE_DENOMINATOR = 32


class Codec(enum.IntEnum):
    RAW = 0
    ZSTD = 1


class BlobCompressor:
    """zstd compressor for one thread; decides per blob whether it pays."""

    __slots__ = ("_cctx",)

    def __init__(self, level: int = DEFAULT_LEVEL) -> None:
        if not LEVEL_MIN <= level <= LEVEL_MAX:
            raise ValueError(f"zstd level must be {LEVEL_MIN}-{LEVEL_MAX}, not {level}")
        # threads=0: never stack zstd's own threads on top of our pool.
        self._cctx = zstandard.ZstdCompressor(level=level, write_checksum=False)

    def compress(self, data: bytes | memoryview) -> tuple[Codec, bytes | memoryview]:
        packed: bytes = self._cctx.compress(data)
        if len(packed) * WORTHWHILE_DENOMINATOR <= len(data) * WORTHWHILE_NUMERATOR:
            return Codec.ZSTD, packed
        return Codec.RAW, data


class BlobDecompressor:
    """Bounded zstd decompressor for one thread."""

    __slots__ = ("_dctx",)

    def __init__(self) -> None:
        self._dctx = zstandard.ZstdDecompressor()

    def decompress(self, codec: int, payload: bytes | memoryview, raw_length: int, limit: int) -> bytes:
        """Return exactly `raw_length` bytes, or raise `FormatError`."""
        if raw_length < 0 or raw_length > limit:
            raise FormatError(f"blob claims {raw_length} bytes, above the limit of {limit}")
        if codec == Codec.RAW:
            if len(payload) != raw_length:
                raise FormatError("raw blob length does not match its record")
            return bytes(payload)
        if codec != Codec.ZSTD:
            raise FormatError(f"unknown codec {codec}")
        try:
            declared = zstandard.frame_content_size(payload)
        except zstandard.ZstdError:
            raise FormatError("blob is not a zstd frame") from None
        if declared not in (-1, raw_length):
            raise FormatError("zstd frame size does not match the blob's record")
        try:
            out: bytes = self._dctx.decompress(payload, max_output_size=raw_length)
        except zstandard.ZstdError:
            raise FormatError("blob does not decompress") from None
        if len(out) != raw_length:
            raise FormatError("decompressed blob length does not match its record")
        return out


def compress_metadata(data: bytes) -> bytes:
    """Compress the msgpack body of an index, snapshot or lock object."""
    return zstandard.ZstdCompressor(level=DEFAULT_LEVEL).compress(data)


SKIPPABLE_MAGIC = 0x184D2A50  # a zstd skippable frame: decoders pass over its content


def pad_metadata(body: bytes, floor: int) -> bytes:
    """`body` (one zstd frame) followed by a skippable frame of zeros, so the
    whole is a PADMÉ length of at least `floor`: the sealed object's size
    then says about as little about its content as a pack's does (what an
    index's size gave away: the exact number of blobs each backup added)."""
    target = max(floor, padme(len(body) + 8))
    return body + struct.pack("<II", SKIPPABLE_MAGIC, target - len(body) - 8) + bytes(target - len(body) - 8)


def decompress_metadata(data: bytes, limit: int) -> bytes:
    """Decompress a metadata body, refusing anything above `limit` bytes."""
    try:
        declared = zstandard.frame_content_size(data)
    except zstandard.ZstdError:
        raise FormatError("metadata body is not a zstd frame") from None
    if declared > limit:
        raise FormatError("metadata body is larger than the limit")
    try:
        out: bytes = zstandard.ZstdDecompressor().decompress(
            data, max_output_size=limit if declared == -1 else 0
        )
    except zstandard.ZstdError:
        raise FormatError("metadata body does not decompress") from None
    return out
