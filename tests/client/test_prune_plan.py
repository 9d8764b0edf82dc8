"""prune_plan.plan on hand-made repositories (table-driven)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from keep.client.engine.prune_plan import plan


@dataclass(frozen=True)
class Entry:
    blob_id: bytes
    length: int


# Packs A..D hold blobs a0.. of 100 bytes each, as their own TOCs say;
# blobs "c*" are in condemned pack C.
CONTENTS = {p: [Entry(f"{p.lower()}{i}".encode(), 100) for i in range(4)] for p in "ABCD"}
PACK_BYTES = {"A": 400, "B": 400, "D": 400}


@pytest.mark.parametrize(
    ("live", "condemned", "deletable", "expected"),
    [
        # all live: everything kept
        (
            {b"a0", b"a1", b"a2", b"a3", b"b0", b"b1", b"b2", b"b3", b"d0", b"d1", b"d2", b"d3"},
            (),
            (),
            {"keep": ["A", "B", "D"]},
        ),
        # B half live (not below 0.5): kept; A one quarter: repacked; D dead: condemned
        ({b"a0", b"b0", b"b1"}, (), (), {"keep": ["B"], "repack": ["A"], "condemn": ["D"]}),
        # C condemned earlier and still unused: deleted when its wait is over, else waits
        (
            {b"a0", b"a1", b"a2", b"a3"},
            ("C",),
            ("C",),
            {"keep": ["A"], "condemn": ["B", "D"], "delete": ["C"]},
        ),
        ({b"a0", b"a1", b"a2", b"a3"}, ("C",), (), {"keep": ["A"], "condemn": ["B", "D"], "still": ["C"]}),
        # a backup that ran meanwhile needs C again: resurrected, never deleted
        (
            {b"a0", b"a1", b"a2", b"a3", b"c0", b"c1", b"c2"},
            ("C",),
            ("C",),
            {"keep": ["A", "C"], "condemn": ["B", "D"], "resurrected": ["C"]},
        ),
    ],
)
def test_plan(
    live: set[bytes], condemned: tuple[str, ...], deletable: tuple[str, ...], expected: dict
) -> None:
    pack_bytes = {**PACK_BYTES, **({"C": 400} if condemned else {})}
    got = plan(pack_bytes, CONTENTS, condemned, deletable, live)
    assert got.keep == expected.get("keep", [])
    assert got.repack == expected.get("repack", [])
    assert got.condemn == expected.get("condemn", [])
    assert got.delete == expected.get("delete", [])
    assert got.still_condemned == expected.get("still", [])
    assert got.resurrected == expected.get("resurrected", [])
    assert not got.missing


def test_a_live_blob_in_no_pack_is_reported() -> None:
    got = plan(PACK_BYTES, CONTENTS, (), (), {b"a0", b"zz"})
    assert got.missing == [b"zz"]


def test_small_padded_packs_are_merged_only_in_company() -> None:
    """A and B hold 400 live blob bytes in 1000 stored bytes (padding)."""
    live = {b"a0", b"a1", b"a2", b"a3", b"b0", b"b1", b"b2", b"b3", b"d0", b"d1", b"d2", b"d3"}
    stored = {"A": 1000, "B": 1000, "D": 400}
    got = plan(stored, CONTENTS, (), (), live)
    assert (got.repack, got.keep) == (["A", "B"], ["D"])
    got = plan({**stored, "B": 400}, CONTENTS, (), (), live)
    assert (got.repack, got.keep) == ([], ["A", "B", "D"])  # one padded pack alone stays


def test_a_pack_holding_a_live_blob_is_never_condemned_whoever_else_holds_it() -> None:
    """E holds a copy of live a0 (and dead blobs): whatever any index says
    about where a0 lives, E is repacked (its live blob copied and verified
    first), never condemned or deleted as unused."""
    contents = {**CONTENTS, "E": [Entry(b"a0", 100), *(Entry(b"e%d" % i, 100) for i in range(1, 4))]}
    live = {b"a0", b"a1", b"a2", b"a3"}
    got = plan({**PACK_BYTES, "E": 400}, contents, ("E",), ("E",), live)
    assert got.repack == ["E"]
    assert "E" not in got.condemn + got.delete
    assert got.resurrected == ["E"]
