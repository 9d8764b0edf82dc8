"""Compression bounds, the chunker and padding."""

from __future__ import annotations

import os

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from keep.protocol.chunker import Chunker, ChunkerParams, chunker_seed
from keep.protocol.compression import BlobCompressor, BlobDecompressor, Codec, decompress_metadata
from keep.protocol.errors import FormatError
from keep.protocol.keys import ChunkerKey
from keep.protocol.limits import CHUNK_MAX, CHUNK_MIN
from keep.protocol.padding import padme

KEY = ChunkerKey(bytes(range(32)))
SMALL = ChunkerParams(min_size=1024, avg_size=4096, max_size=16384)


def test_incompressible_blob_is_stored_raw() -> None:
    data = os.urandom(100_000)
    codec, payload = BlobCompressor().compress(data)
    assert codec is Codec.RAW
    assert payload == data
    codec, payload = BlobCompressor().compress(b"a" * 100_000)
    assert codec is Codec.ZSTD
    assert len(payload) < 1000


def test_decompression_bomb_is_refused_before_allocation() -> None:
    bomb = zstandard.ZstdCompressor().compress(bytes(50 * 1024 * 1024))
    with pytest.raises(FormatError):
        BlobDecompressor().decompress(Codec.ZSTD, bomb, 1000, limit=1000)
    with pytest.raises(FormatError):
        BlobDecompressor().decompress(Codec.ZSTD, bomb, 50 * 1024 * 1024, limit=1 << 20)
    with pytest.raises(FormatError):
        decompress_metadata(bomb, 1 << 20)
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(1 << 20))
    with pytest.raises(FormatError):
        BlobDecompressor().decompress(Codec.ZSTD, unsized, 1000, limit=1000)
    with pytest.raises(FormatError):
        decompress_metadata(b"not zstd", 1000)


def test_decompressor_checks_raw_length_and_codec() -> None:
    d = BlobDecompressor()
    with pytest.raises(FormatError):
        d.decompress(Codec.RAW, b"abc", 4, limit=10)
    with pytest.raises(FormatError):
        d.decompress(7, b"abc", 3, limit=10)


def test_chunker_respects_bounds_on_random_data() -> None:
    lengths = Chunker(KEY).cut(os.urandom(40 * 1024 * 1024), final=True)
    assert all(CHUNK_MIN <= n <= CHUNK_MAX for n in lengths[:-1])
    mean = sum(lengths) / len(lengths)
    assert 0.6 * 2**20 < mean < 1.6 * 2**20


@settings(max_examples=30, deadline=None)
@given(st.binary(min_size=0, max_size=200_000), st.integers(2 * 16384, 100_000))
def test_chunking_in_buffers_equals_chunking_whole(data: bytes, bufsize: int) -> None:
    chunker = Chunker(KEY, SMALL)
    whole = chunker.cut(data, final=True)
    streamed: list[int] = []
    carry = b""
    pos = 0
    while True:
        buf = carry + data[pos : pos + bufsize]
        pos += bufsize
        final = pos >= len(data)
        lengths = chunker.cut(buf, final=final)
        streamed += lengths
        carry = buf[sum(lengths) :]
        if final:
            break
    assert streamed == whole
    assert sum(whole) == len(data)


def test_chunker_key_changes_boundaries() -> None:
    data = os.urandom(4 * 1024 * 1024)
    a = Chunker(KEY, SMALL).cut(data, final=True)
    b = Chunker(ChunkerKey(bytes(32)), SMALL).cut(data, final=True)
    assert a != b
    assert chunker_seed(KEY) < 2**48


@given(st.integers(0, 2**40))
def test_padme_bounds(n: int) -> None:
    p = padme(n)
    assert p >= n
    assert p - n <= max(1, n // 8)
    assert padme(p) == p
