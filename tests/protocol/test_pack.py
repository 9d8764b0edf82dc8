from __future__ import annotations

import contextlib
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keep.protocol import msgcodec
from keep.protocol.blob import BlobType, blob_id
from keep.protocol.compression import BlobCompressor, BlobDecompressor, Codec
from keep.protocol.envelope import TAG_SIZE, ObjectCipher, ObjectKind, Suite
from keep.protocol.errors import FormatError, IntegrityError, KeepError
from keep.protocol.keys import RepositoryKeys
from keep.protocol.limits import BLOB_RAW_MAX, PACK_MAX, TREE_RAW_MAX
from keep.protocol.pack import (
    FOOTER_SEALED_SIZE,
    TOC_LENGTH,
    TOC_VERSION,
    PackReader,
    PackWriter,
    TocEntry,
    write_pack,
)
from keep.protocol.padding import padded_pack_size

SALT = bytes(range(32))


def build(keys: RepositoryKeys, blobs: list[bytes], floor: int = 0, salt: bytes = SALT) -> bytes:
    compressor = BlobCompressor()
    records = []
    for data in blobs:
        codec, payload = compressor.compress(data)
        records.append((BlobType.DATA, blob_id(keys.id, data), codec, payload, len(data)))
    cipher = ObjectCipher.new(keys.data, ObjectKind.PACK, Suite.AES_256_GCM, salt)
    return write_pack(cipher, records, pad_floor=floor)


def read_all(keys: RepositoryKeys, pack: bytes) -> list[bytes]:
    reader = PackReader.open(keys.data, pack)
    return [reader.blob(e, pack, keys.id, BlobDecompressor()) for e in reader.entries]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=3000), max_size=12), st.integers(0, 70_000))
def test_pack_round_trip(keys: RepositoryKeys, blobs: list[bytes], floor: int) -> None:
    pack = build(keys, blobs, floor)
    assert read_all(keys, pack) == blobs
    assert len(pack) >= floor


def test_pack_size_is_padded_and_hides_blob_lengths(keys: RepositoryKeys) -> None:
    sizes = {len(build(keys, [random.randbytes(n)], floor=1 << 20)) for n in range(1000, 60_000, 997)}
    assert sizes == {1 << 20}  # every single-blob pack looks the same
    big = build(keys, [random.randbytes(3_000_000)], floor=0)
    assert len(big) == padded_pack_size(len(big), 0)


def test_every_truncation_is_refused(keys: RepositoryKeys) -> None:
    pack = build(keys, [b"abc" * 50, b"xyz"])
    for cut in range(len(pack)):
        with pytest.raises((FormatError, IntegrityError)):
            read_all(keys, pack[:cut])


def test_every_flipped_bit_is_refused(keys: RepositoryKeys) -> None:
    pack = build(keys, [b"hello", b"world" * 20])
    for bit in range(len(pack) * 8):
        damaged = bytearray(pack)
        damaged[bit // 8] ^= 1 << (bit % 8)
        expected = IntegrityError if bit // 8 >= 8 else (FormatError, IntegrityError)
        with pytest.raises(expected):
            read_all(keys, bytes(damaged))


def test_blob_from_another_pack_is_refused(keys: RepositoryKeys) -> None:
    a = build(keys, [b"same position"], salt=bytes(32))
    b = build(keys, [b"other content"], salt=bytes(range(32)))
    reader_b = PackReader.open(keys.data, b)
    entry = reader_b.entries[0]
    spliced = (
        b[: entry.offset] + a[entry.offset : entry.offset + entry.length] + b[entry.offset + entry.length :]
    )
    with pytest.raises(IntegrityError):
        reader_b.blob(entry, spliced, keys.id, BlobDecompressor())


def test_swapped_blob_frames_are_refused(keys: RepositoryKeys) -> None:
    pack = build(keys, [b"A" * 40, b"B" * 40])
    reader = PackReader.open(keys.data, pack)
    e0, e1 = reader.entries
    assert e0.length == e1.length
    swapped = (
        pack[: e0.offset]
        + pack[e1.offset : e1.offset + e1.length]
        + pack[e0.offset : e0.offset + e0.length]
        + pack[e1.offset + e1.length :]
    )
    for entry in reader.entries:
        with pytest.raises(IntegrityError):
            reader.blob(entry, swapped, keys.id, BlobDecompressor())


def test_blob_id_is_rechecked_after_decryption(keys: RepositoryKeys) -> None:
    """A blob sealed under a wrong id (a buggy or malicious writer with the key)
    authenticates but fails the id check."""
    cipher = ObjectCipher.new(keys.data, ObjectKind.PACK, Suite.AES_256_GCM, SALT)
    pack = write_pack(cipher, [(BlobType.DATA, blob_id(keys.id, b"claimed"), Codec.RAW, b"actual!", 7)], 0)
    with pytest.raises(IntegrityError, match="does not match"):
        read_all(keys, pack)


@settings(max_examples=200)
@given(st.binary(max_size=400))
def test_pack_reader_raises_only_documented_errors(keys: RepositoryKeys, data: bytes) -> None:
    with contextlib.suppress(KeepError):
        read_all(keys, data)


def test_streaming_writer_output_equals_write_pack(keys: RepositoryKeys) -> None:
    cipher = ObjectCipher.new(keys.data, ObjectKind.PACK, Suite.AES_256_GCM, SALT)
    writer = PackWriter(cipher)
    parts = [writer.header, writer.add(BlobType.DATA, blob_id(keys.id, b"x"), Codec.RAW, b"x", 1)]
    assert writer.size == sum(len(p) for p in parts)
    parts.append(writer.finish(4096))
    again = write_pack(cipher, [(BlobType.DATA, blob_id(keys.id, b"x"), Codec.RAW, b"x", 1)], 4096)
    assert b"".join(parts) == again
    assert len(again) == 4096


def test_padding_foretells_what_finish_pads(keys: RepositoryKeys) -> None:
    """The packer closes a pack where padding it wastes little, asking
    `padding` after every blob: it counts the TOC's length as entries are
    added, and must give exactly what `finish` then pads, across every
    msgpack length boundary of the entry count and of each entry's fields."""
    cipher = ObjectCipher.new(keys.data, ObjectKind.PACK, Suite.AES_256_GCM, SALT)
    writer = PackWriter(cipher)
    raws = [0, 1, 127, 128, 255, 256, 65535, 65536, BLOB_RAW_MAX]
    checks = {0, 1, 2, 14, 15, 16, 17, 100, 1300, 1400, 65535, 65536, 65537, 70_000}
    for n in range(max(checks) + 1):
        if n in checks:
            for floor in (0, 4096, 1 << 20):
                predicted = writer.padding(floor)
                total = writer.size + len(writer.finish(floor))
                toc = msgcodec.pack([TOC_VERSION, [e.to_list() for e in writer.entries]])
                unpadded = writer.size + TAG_SIZE + TOC_LENGTH.size + len(toc) + FOOTER_SEALED_SIZE
                assert total - unpadded == predicted, (n, floor)
                assert total == padded_pack_size(unpadded, floor)
        payload = b"p" * (n % 300)  # sealed lengths of 1 and 2 bytes' encoding
        writer.add(BlobType.DATA, n.to_bytes(32, "big"), Codec.RAW, payload, raws[n % len(raws)])


ENTRY_EDGES: list[object] = [
    None, True, False, -1, 0, 1, 2, 3, 255, 256, 39, 40, 41, 15, 16, 17,
    PACK_MAX, PACK_MAX + 1, BLOB_RAW_MAX, BLOB_RAW_MAX + 1, TREE_RAW_MAX, TREE_RAW_MAX + 1,
    2**64, b"", bytes(31), bytes(32), bytes(33), "x" * 32, [], 1.5,
]  # fmt: skip
BASE_ENTRY = [int(BlobType.DATA), bytes(32), int(Codec.ZSTD), 40, 16, 0]


def assert_entry_decodes_like_the_reference(value: object) -> None:
    try:
        reference: TocEntry | str = TocEntry.checked_entry(value, 7)
    except FormatError as exc:
        reference = str(exc)
    if isinstance(reference, str):  # the refusal names the same field
        with pytest.raises(FormatError, match=f"^{re.escape(reference)}$"):
            TocEntry.from_list(value, 7)
        return
    decoded = TocEntry.from_list(value, 7)
    assert decoded == reference
    assert list(decoded.to_list()) == value
    assert decoded.frame == 7
    assert type(decoded.blob_type) is BlobType
    assert type(decoded.codec) is Codec


@pytest.mark.parametrize("index", range(6))
def test_every_edge_value_in_every_toc_field_is_judged_like_the_reference(index: int) -> None:
    """`TocEntry.from_list` decides with one combined test (the index has an
    entry per blob); it must accept exactly what the field-by-field
    reference accepts, for both blob types."""
    for kind in BlobType:
        for value in ENTRY_EDGES:
            fields: list[object] = [int(kind), *BASE_ENTRY[1:]]
            fields[index] = value
            assert_entry_decodes_like_the_reference(fields)


entry_values = st.one_of(st.sampled_from(ENTRY_EDGES), st.integers(), st.binary(max_size=33))


@settings(max_examples=1000)
@given(st.lists(st.tuples(st.integers(0, 5), entry_values), max_size=3), st.lists(entry_values, max_size=7))
def test_toc_entry_decoding_agrees_with_the_reference(
    changes: list[tuple[int, object]], other_shape: list[object]
) -> None:
    fields = list(BASE_ENTRY)
    for index, value in changes:
        fields[index] = value
    assert_entry_decodes_like_the_reference(fields)
    assert_entry_decodes_like_the_reference(other_shape)
