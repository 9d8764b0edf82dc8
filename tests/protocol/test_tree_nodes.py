"""The compiled tree-node decoder (src/keep/protocol/_nodes.c) against the
Python reference (`tree.decode_nodes`): it accepts exactly what the reference
accepts, builds equal nodes of the same types sharing the same owner fields,
refuses by handing back to the reference (so the error is the reference's),
and neither leaks nor frees what it was given, on success or on refusal.

Where the extension was not built (no C compiler or Python headers) these
tests skip, which CI counts as a failure: CI must test the code users run."""

from __future__ import annotations

import gc
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keep.protocol import msgcodec, tree
from keep.protocol.errors import FormatError
from keep.protocol.tree import NODE_FIELDS, Node, NodeType, Tree

from .test_records import BASE_NODES, EDGE_VALUES, field_values, trees


class IntSub(int):
    pass


class BytesSub(bytes):
    pass


class ListSub(list[object]):
    pass


# What msgpack never produces but a caller might pass: subclasses, tuples.
ODD_VALUES: list[object] = [IntSub(1), BytesSub(bytes(32)), ListSub(), (), (bytes(32),), b"a" * 4095 + b"/"]


@pytest.fixture(scope="module")
def compiled() -> Any:
    if tree._compiled is None:
        pytest.skip("keep.protocol._nodes was not built here (no C compiler or Python headers)")
    return tree._compiled


def reference(raw_nodes: list[Any]) -> tuple[Node, ...] | str:
    """The nodes the Python decoder builds, or the error it raises."""
    try:
        return tree.decode_nodes(raw_nodes)
    except FormatError as exc:
        return str(exc)


def assert_agrees(compiled: Any, raw_nodes: list[Any]) -> None:
    expected = reference(raw_nodes)
    got = compiled.decode(raw_nodes, *tree._COMPILED_ARGS)
    if isinstance(expected, str):
        assert got is None, f"the compiled decoder accepted what the reference refuses: {expected}"
    else:
        assert got is not None, "the compiled decoder refused what the reference accepts"
        assert got == expected
        for a, b in zip(got, expected, strict=True):
            assert type(a) is Node
            assert [type(x) for x in a] == [type(x) for x in b]
            assert a.type is b.type  # the NodeType member itself, not its number
            for field in ("mode", "uid", "gid", "user", "group", "device_id"):
                assert getattr(a, field) is getattr(b, field)  # the same shared objects
    try:
        data = msgcodec.pack([1, raw_nodes])
    except (TypeError, ValueError, OverflowError):
        return  # not encodable (an integer past 64 bits): only the direct call above
    assert from_bytes(data, compiled) == from_bytes(data, None)


def from_bytes(data: bytes, compiled: Any) -> Tree | str:
    """`Tree.from_bytes` with or without the compiled decoder: the tree, or
    the error it raises."""
    saved, tree._compiled = tree._compiled, compiled
    try:
        return Tree.from_bytes(data)
    except FormatError as exc:
        return str(exc)
    finally:
        tree._compiled = saved


def test_it_is_built_for_the_format_s_limits(compiled: Any) -> None:
    assert compiled.LIMITS == tree.LIMITS


@pytest.mark.parametrize("index", range(NODE_FIELDS))
def test_every_edge_value_in_every_field_is_judged_like_the_reference(compiled: Any, index: int) -> None:
    for base in BASE_NODES:
        for value in [*EDGE_VALUES, *ODD_VALUES]:
            fields = base.to_list()
            fields[index] = value
            assert_agrees(compiled, [fields])
            assert_agrees(compiled, [Node(b"0", NodeType.FILE).to_list(), fields])  # not the first node


@settings(max_examples=1500)
@given(
    trees(),
    st.lists(st.tuples(st.integers(0, 7), st.integers(0, NODE_FIELDS - 1), field_values), max_size=3),
)
def test_random_trees_with_random_damage_decode_like_the_reference(
    compiled: Any, sample: Tree, changes: list[tuple[int, int, object]]
) -> None:
    raw_nodes = [n.to_list() for n in sample.nodes]
    for node, index, value in changes:
        if raw_nodes:
            raw_nodes[node % len(raw_nodes)][index] = value
    assert_agrees(compiled, raw_nodes)


@pytest.mark.parametrize(
    "names",
    [
        [b"a", b"a"],
        [b"b", b"a"],
        [b"a", b"ab", b"ab"],
        [b"ab", b"a"],
        [b"a\xff", b"a\x01"],
        [b"a", b"b", b"a"],
    ],
)
def test_unsorted_or_repeated_names_are_refused_like_the_reference(compiled: Any, names: list[bytes]) -> None:
    assert_agrees(compiled, [Node(n, NodeType.FILE).to_list() for n in names])


def test_shapes_that_are_not_a_node(compiled: Any) -> None:
    good = Node(b"a", NodeType.FILE).to_list()
    for raw in ([good[:-1]], [[*good, None]], [tuple(good)], [None], [b"x"], [ListSub(good)], []):
        assert_agrees(compiled, raw)


def test_a_large_tree_decodes_to_the_same_nodes(compiled: Any) -> None:
    nodes = tuple(
        Node(
            f"f{i:06}".encode(),
            NodeType(1 + i % 3),
            0o644,
            i % 7,
            0,
            "user",
            "group",
            i * 10**9,
            -i,
            i,
            2**64 - 1 - i,
            1,
            2**40,
            0,
            ((b"user.k", b"v" * (i % 5)),) if i % 11 == 0 else (),
            b"target" if i % 3 == 2 else b"",
            (bytes(32), i.to_bytes(32, "big")) if i % 3 == 0 else (),
            i.to_bytes(32, "little") if i % 3 == 1 else None,
        )
        for i in range(20_000)
    )
    raw_nodes = msgcodec.unpack(Tree(nodes).to_bytes(), tree.TREE_RAW_MAX)[1]
    assert_agrees(compiled, raw_nodes)
    assert Tree.from_bytes(Tree(nodes).to_bytes()).nodes == nodes


def test_it_neither_leaks_nor_frees_what_it_is_given(compiled: Any) -> None:
    """Reference counts of the fields before and after many decodes, kept and
    dropped, accepted and refused (the bad xattr makes the reference's
    checker raise inside the compiled call)."""
    good: list[list[Any]] = [
        Node(b"a", NodeType.FILE, content=(bytes(32),)).to_list(),
        Node(b"b", NodeType.DIR, subtree=bytes(32)).to_list(),
    ]
    bad_late: list[list[Any]] = [good[0], [*good[1][:14], [[b"n"]], *good[1][15:]]]
    unsorted = [good[1], good[0]]
    watched: list[object] = [
        good[0][0],
        good[0][16],
        good[0][16][0],
        good[1][17],
        bad_late[1][14],
        bad_late[1][14][0],
    ]
    for raw in (good, bad_late, unsorted):
        compiled.decode(raw, *tree._COMPILED_ARGS)  # warm: the shared table holds its owner once
    watched.append(tree._SHARED[(0o644, 0, 0, "", "", 0)])
    gc.collect()
    before = [sys.getrefcount(x) for x in watched]
    kept = [compiled.decode(good, *tree._COMPILED_ARGS) for _ in range(100)]
    assert all(k is not None and k[0].content == (bytes(32),) for k in kept)
    del kept
    for _ in range(1000):
        assert compiled.decode(bad_late, *tree._COMPILED_ARGS) is None
        assert compiled.decode(unsorted, *tree._COMPILED_ARGS) is None
        assert compiled.decode(good, *tree._COMPILED_ARGS) is not None
    gc.collect()
    assert [sys.getrefcount(x) for x in watched] == before


def test_its_arguments_are_checked(compiled: Any) -> None:
    args = tree._COMPILED_ARGS
    with pytest.raises(TypeError):
        compiled.decode((), *args)  # not a list
    with pytest.raises(TypeError):
        compiled.decode([], dict, *args[1:])  # not a tuple type
    with pytest.raises(TypeError):
        compiled.decode([])
