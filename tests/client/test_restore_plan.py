"""The restore plan's ranges (restore_plan.plan, pure): each within
RANGE_MAX, filled whatever the blobs' plaintext (a fetch thread holds one
blob at a time, not its range), and every blob fetched once, by a range
that covers it."""

from __future__ import annotations

import os
import random

from keep.client.engine.blob_index import PackTable
from keep.client.engine.restore_plan import MERGE_GAP, RANGE_MAX, plan
from keep.protocol.blob import BlobType
from keep.protocol.compression import Codec
from keep.protocol.envelope import Suite
from keep.protocol.index import IndexedPack
from keep.protocol.limits import CHUNK_MAX, MiB
from keep.protocol.pack import TocEntry


def _pack(blobs: list[tuple[int, int]], gap: int = 0) -> tuple[PackTable, list[bytes]]:
    """A pack of blobs given as (sealed length, plaintext length), laid out
    one after the other with `gap` bytes between them."""
    entries, offset = [], 64
    for frame, (length, raw_length) in enumerate(blobs):
        entries.append(TocEntry(BlobType.DATA, os.urandom(32), Codec.ZSTD, offset, length, raw_length, frame))
        offset += length + gap
    pack = IndexedPack(os.urandom(32), Suite.AES_256_GCM, os.urandom(32), tuple(entries))
    return PackTable(pack), [e.blob_id for e in entries]


def _plan(table: PackTable, ids: list[bytes]) -> list[list[bytes]]:
    """The blobs of each planned range, after checking that the range
    (widened for privacy: `locations.aligned`) covers them."""
    where = {bid: (table, n) for n, bid in enumerate(ids)}
    span = {bid: table.span(n) for n, bid in enumerate(ids)}
    size = max(o + length for o, length, _ in span.values()) + 4096
    out = []
    for rng in plan([[bid] for bid in ids], where.get, {table.pack_id: size}):
        members = [b.blob_id for b in rng.blobs]
        assert all(rng.start <= span[b][0] and span[b][0] + span[b][1] <= rng.end for b in members)
        out.append(members)
    assert sorted(b for members in out for b in members) == sorted(ids)  # each blob once
    return out


def _fetched(table: PackTable, ids: list[bytes], members: list[bytes]) -> int:
    """Bytes between the first member's start and the last one's end."""
    spans = [table.span(ids.index(b)) for b in members]
    return max(o + n for o, n, _ in spans) - min(o for o, _, _ in spans)


def test_zero_runs_fill_ranges_like_any_blob() -> None:
    """Runs of zeros: 8 MiB of plaintext behind a few hundred bytes each,
    among ordinary 1 MiB blobs. A thread opens one blob at a time off the
    connection, so their plaintext does not shorten the ranges: 9 MiB of
    sealed bytes in two requests."""
    blobs = [(1 * MiB, 1 * MiB)] * 3 + [(300, CHUNK_MAX)] + [(1 * MiB, 1 * MiB)] * 6 + [(300, CHUNK_MAX)] * 2
    table, ids = _pack(blobs)
    ranges = _plan(table, ids)
    assert [len(members) for members in ranges] == [8, 4]
    assert all(_fetched(table, ids, members) <= RANGE_MAX for members in ranges)


def test_ordinary_blobs_still_fill_ranges_up_to_range_max() -> None:
    table, ids = _pack([(512 * 1024, 600 * 1024)] * 40)
    ranges = _plan(table, ids)
    assert [len(members) for members in ranges] == [16, 16, 8]  # 20 MiB in ranges of RANGE_MAX


def test_a_blob_of_range_max_has_a_range_of_its_own() -> None:
    table, ids = _pack([(8 * MiB, 8 * MiB), (100, 8 * MiB)])
    assert _plan(table, ids) == [[ids[0]], [ids[1]]]


def test_random_layouts_fetch_every_blob_once_and_within_bounds() -> None:
    rng = random.Random(5)
    for _ in range(200):
        blobs = [
            (rng.choice((200, 4096, 300_000, 1 * MiB, 3 * MiB)), rng.choice((1, 1 * MiB, 2 * MiB, 8 * MiB)))
            for _ in range(rng.randint(1, 30))
        ]
        table, ids = _pack(blobs, gap=rng.choice((0, 1000, MERGE_GAP + 1)))
        for members in _plan(table, ids):
            if len(members) > 1:
                assert _fetched(table, ids, members) <= RANGE_MAX
