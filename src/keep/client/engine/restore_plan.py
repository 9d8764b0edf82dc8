"""Restore planning (pure): which pack ranges to fetch, and where each blob goes.

Given the blobs each file needs (in order) and where each blob lives, group
them by pack, merge ranges whose gap is below MERGE_GAP, and widen every range
to RANGE_ALIGN boundaries — so the server sees a few large aligned reads per
pack, never one that matches a single blob's frame (docs/threat-model.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from keep.client.engine.locations import RANGE_ALIGN, Location, aligned
from keep.protocol.limits import MiB

MERGE_GAP = 1 * MiB
RANGE_MAX = 8 * MiB


class Target(NamedTuple):
    file: int  # index into the caller's file list
    offset: int  # where the blob's plaintext goes in that file


@dataclass(slots=True)
class BlobFetch:
    location: Location
    targets: list[Target] = field(default_factory=list)


@dataclass(slots=True)
class RangeFetch:
    pack_id: str
    start: int
    end: int
    blobs: list[BlobFetch]


def plan(
    files: Sequence[Sequence[bytes]],
    locate: Mapping[bytes, Location],
    pack_sizes: Mapping[str, int],
) -> list[RangeFetch]:
    """`files[i]` lists file i's blobs in order; each goes where the index's
    plaintext lengths of the blobs before it end. Raises KeyError for a blob
    that is not indexed (the caller reports the file)."""
    blobs: dict[bytes, BlobFetch] = {}
    for index, content in enumerate(files):
        offset = 0
        for bid in content:
            fetch = blobs.get(bid)
            if fetch is None:
                fetch = blobs[bid] = BlobFetch(locate[bid])
            fetch.targets.append(Target(index, offset))
            offset += fetch.location.entry.raw_length
    by_pack: dict[str, list[BlobFetch]] = defaultdict(list)
    for fetch in blobs.values():
        by_pack[fetch.location.pack_id].append(fetch)
    out: list[RangeFetch] = []
    for pack_id in sorted(by_pack):
        members = sorted(by_pack[pack_id], key=lambda f: f.location.entry.offset)
        size = pack_sizes.get(pack_id, 0)
        ranges: list[RangeFetch] = []
        current: RangeFetch | None = None
        for fetch in members:
            entry = fetch.location.entry
            start, end = entry.offset, entry.offset + entry.length
            if current is not None and start - current.end <= MERGE_GAP and end - current.start <= RANGE_MAX:
                current.end = max(current.end, end)
                current.blobs.append(fetch)
                continue
            current = RangeFetch(pack_id, start, end, [fetch])
            ranges.append(current)
        for rng in ranges:
            limit = size if size > 0 else rng.end + RANGE_ALIGN
            rng.start, rng.end = aligned(rng.start, rng.end, max(limit, rng.end))
        out += ranges
    return out
