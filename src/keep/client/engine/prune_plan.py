"""What prune does with each pack (pure: no I/O, no clock).

Given every pack and what it holds — read from the pack itself, never from
an index's claim — the set of blobs that snapshots reference, and which
condemned packs may be deleted now, `plan` sorts every pack into one of four
piles. A pack that holds any live blob is never condemned or deleted, even if
another pack holds the same blob: only repacking (copying and verifying what
is live) retires it. So no record anyone wrote about where a blob lives can
make prune delete the only good copy.

- keep: enough of it is live (at least `repack_below` of its stored bytes);
- repack: some of it is live, but less than `repack_below`: its live blobs are
  copied into new packs, then it is condemned. A pack that is mostly padding
  (a small pack of a small incremental backup) rather than mostly dead is
  repacked only together with at least one other such pack, since merging
  them is what saves space: one small pack alone would be rewritten as the
  same small pack by every prune;
- condemn: nothing in it is live; it stays readable until the second phase;
- delete: condemned earlier, still unreferenced, and no backup that could have
  relied on it is still running.

A condemned pack that a snapshot needs again (a backup that was running during
the first phase referenced it) is "resurrected": it joins keep or repack like
any live pack. A live blob that no pack holds is reported as missing, and the
caller must not delete anything (the repository is damaged: `keep check`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

REPACK_BELOW = 0.5  # repack a pack when less than half of its stored bytes are live


class _Entry(Protocol):
    @property
    def blob_id(self) -> bytes: ...

    @property
    def length(self) -> int: ...


@dataclass
class PrunePlan:
    keep: list[str] = field(default_factory=list)
    repack: list[str] = field(default_factory=list)
    condemn: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    still_condemned: list[str] = field(default_factory=list)  # not yet deletable
    resurrected: list[str] = field(default_factory=list)
    missing: list[bytes] = field(default_factory=list)  # live blobs no pack holds
    live_bytes: dict[str, int] = field(default_factory=dict)  # per pack


def plan(
    pack_bytes: Mapping[str, int],
    contents: Mapping[str, Sequence[_Entry]],
    condemned: Collection[str],
    deletable: Collection[str],
    live: Collection[bytes],
    repack_below: float = REPACK_BELOW,
) -> PrunePlan:
    """`pack_bytes`: stored bytes (padding included) per pack that is not
    condemned; `contents`: the TOC entries of every pack (condemned ones
    too), as the pack itself states them; `condemned`: packs the owner
    condemned (a subset, or missing from the server); `deletable`: the
    condemned packs whose waiting time is over."""
    result = PrunePlan()
    used: dict[str, int] = {}
    blob_bytes: dict[str, int] = {}
    held: set[bytes] = set()
    for pack_id, entries in contents.items():
        blob_bytes[pack_id] = sum(e.length for e in entries)
        live_here = sum(e.length for e in entries if e.blob_id in live)
        held.update(e.blob_id for e in entries)
        if live_here:
            used[pack_id] = live_here
    result.missing = sorted(b for b in live if b not in held)
    result.live_bytes = used
    mostly_padding = []
    for pack_id in sorted(set(pack_bytes) | set(condemned)):
        live_bytes = used.get(pack_id, 0)
        if pack_id in condemned:
            if not live_bytes:
                (result.delete if pack_id in deletable else result.still_condemned).append(pack_id)
                continue
            result.resurrected.append(pack_id)
        total = pack_bytes.get(pack_id, 0)
        if not live_bytes:
            result.condemn.append(pack_id)
        elif live_bytes < repack_below * blob_bytes.get(pack_id, total):
            result.repack.append(pack_id)
        elif live_bytes < repack_below * total:
            mostly_padding.append(pack_id)
        else:
            result.keep.append(pack_id)
    if len(mostly_padding) >= 2:
        result.repack = sorted(result.repack + mostly_padding)
    else:
        result.keep = sorted(result.keep + mostly_padding)
    return result
