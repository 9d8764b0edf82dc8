"""Trees, snapshots, indexes and locks: round trips and strict decoding."""

from __future__ import annotations

import contextlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keep.protocol import msgcodec, tree
from keep.protocol.blob import BlobType
from keep.protocol.compression import Codec
from keep.protocol.envelope import ObjectKind, Suite
from keep.protocol.errors import FormatError, IntegrityError, KeepError
from keep.protocol.index import Index, IndexedPack
from keep.protocol.keys import RepositoryKeys
from keep.protocol.lock import LockRecord
from keep.protocol.pack import TocEntry
from keep.protocol.sealed_record import open_record
from keep.protocol.snapshot import Snapshot
from keep.protocol.tree import NODE_FIELDS, Node, NodeType, Tree, check_node_fields

SALT = bytes(32)
names = st.binary(min_size=1, max_size=40).filter(
    lambda n: b"/" not in n and b"\0" not in n and n not in (b".", b"..")
)


@st.composite
def trees(draw: st.DrawFn) -> Tree:
    node_names = sorted(set(draw(st.lists(names, max_size=8))))
    nodes = []
    for name in node_names:
        kind = draw(st.sampled_from([NodeType.FILE, NodeType.DIR, NodeType.SYMLINK]))
        nodes.append(
            Node(
                name=name,
                type=kind,
                mode=draw(st.integers(0, 0o7777)),
                mtime_ns=draw(st.integers(-(2**63), 2**63 - 1)),
                size=draw(st.integers(0, 2**40)),
                xattrs=tuple(draw(st.lists(st.tuples(names, st.binary(max_size=20)), max_size=2))),
                target=draw(names) if kind is NodeType.SYMLINK else b"",
                content=tuple(draw(st.lists(st.binary(min_size=32, max_size=32), max_size=3)))
                if kind is NodeType.FILE
                else (),
                subtree=draw(st.binary(min_size=32, max_size=32)) if kind is NodeType.DIR else None,
            )
        )
    return Tree(tuple(nodes))


@settings(max_examples=60)
@given(trees())
def test_tree_round_trip(tree: Tree) -> None:
    data = tree.to_bytes()
    assert Tree.from_bytes(data) == tree
    for cut in range(len(data)):
        with pytest.raises(FormatError):
            Tree.from_bytes(data[:cut])


@pytest.mark.parametrize("name", [b"..", b".", b"a/b", b"/etc", b"", b"x\0y"])
def test_tree_refuses_names_that_are_not_one_component(name: bytes) -> None:
    node = Node(b"ok", NodeType.FILE).to_list()
    node[0] = name
    with pytest.raises(FormatError):
        Tree.from_bytes(msgcodec.pack([1, [node]]))


def test_tree_refuses_duplicate_and_unsorted_names() -> None:
    a = Node(b"a", NodeType.FILE).to_list()
    b = Node(b"b", NodeType.FILE).to_list()
    for nodes in ([a, a], [b, a]):
        with pytest.raises(FormatError):
            Tree.from_bytes(msgcodec.pack([1, nodes]))
    with pytest.raises(FormatError):
        Tree((Node(b"a", NodeType.FILE), Node(b"a", NodeType.FILE))).to_bytes()


# Values for any node field: right and wrong types, edges of every range.
EDGE_VALUES = [
    None,
    True,
    False,
    0,
    1,
    2,
    6,
    7,
    255,
    256,
    0o7777,
    0o10000,
    -1,
    2**31,
    2**32 - 1,
    2**32,
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    2**64 - 1,
    2**64,
    b"",
    b".",
    b"..",
    b"a/b",
    b"x\0",
    b"ok",
    bytes(32),
    bytes(31),
    b"x" * 4096,
    b"x" * 4097,
    "",
    "root",
    "é" * 256,
    "é" * 257,
    [],
    [bytes(32)],
    [bytes(32), b"short"],
    [[b"n", b"v"]],
    [[b"n"]],
    [[b"n", 1]],
    [b"x"],
    {"a": 1},
    1.5,
]
field_values = st.one_of(
    st.sampled_from(EDGE_VALUES),
    st.integers(),
    st.binary(max_size=40),
    st.text(max_size=5),
)


BASE_NODES = [
    Node(b"f", NodeType.FILE, content=(bytes(32),)),
    Node(b"d", NodeType.DIR, subtree=bytes(32)),
    Node(b"l", NodeType.SYMLINK, target=b"t", xattrs=((b"user.a", b"v"),)),
]


@settings(max_examples=2000)
@given(
    st.sampled_from(BASE_NODES),
    st.lists(st.tuples(st.integers(0, NODE_FIELDS - 1), field_values), max_size=3),
)
def test_node_decoding_agrees_with_the_field_by_field_checks(
    base: Node, changes: list[tuple[int, object]]
) -> None:
    """`Node.from_list` decides with one combined test; it must accept exactly
    what the field-by-field reference accepts, and decode it faithfully."""
    fields = base.to_list()
    for index, value in changes:
        fields[index] = value
    assert_decodes_like_the_reference(fields)


def assert_decodes_like_the_reference(fields: list[object]) -> None:
    try:
        check_node_fields(fields)
        reference = None
    except FormatError as exc:
        reference = str(exc)
    if reference is None:
        assert Node.from_list(fields).to_list() == fields
    else:  # the refusal names the same field
        with pytest.raises(FormatError, match=f"^{re.escape(reference)}$"):
            Node.from_list(fields)


@pytest.mark.parametrize("index", range(NODE_FIELDS))
def test_every_edge_value_in_every_node_field_is_judged_like_the_reference(index: int) -> None:
    for base in BASE_NODES:
        for value in EDGE_VALUES:
            fields = base.to_list()
            fields[index] = value
            assert_decodes_like_the_reference(fields)


def test_tree_refuses_directories_without_subtree_and_content_on_non_files() -> None:
    d = Node(b"d", NodeType.DIR, subtree=bytes(32)).to_list()
    d[17] = None
    with pytest.raises(FormatError):
        Tree.from_bytes(msgcodec.pack([1, [d]]))
    s = Node(b"s", NodeType.SYMLINK).to_list()
    s[16] = [bytes(32)]
    with pytest.raises(FormatError):
        Tree.from_bytes(msgcodec.pack([1, [s]]))


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_record_decoders_raise_only_format_error(data: bytes) -> None:
    for decode in (
        Tree.from_bytes,
        lambda d: Snapshot.from_record(msgcodec.unpack(d, 1000)),
        lambda d: Index.from_record(msgcodec.unpack(d, 1000)),
        lambda d: LockRecord.from_record(msgcodec.unpack(d, 1000)),
    ):
        with contextlib.suppress(FormatError):
            decode(data)


def snapshot() -> Snapshot:
    return Snapshot(
        time_ns=1,
        host="h",
        user="u",
        paths=(b"/a", b"/\xff"),
        tree=bytes(32),
        program="keep",
        tags=("t",),
        parent=bytes(range(32)),
        summary={"files": 3},
    )


@pytest.mark.parametrize("suite", list(Suite))
def test_sealed_records_round_trip(keys: RepositoryKeys, suite: Suite) -> None:
    snap = snapshot()
    assert Snapshot.open(keys.data, snap.seal(keys.data, suite, SALT)) == snap
    entry = TocEntry(BlobType.DATA, bytes(32), Codec.ZSTD, 40, 100, 200, 0)
    pack = IndexedPack(bytes(32), suite, SALT, (entry,))
    index = Index((pack,), supersedes=(bytes(32),), condemned=(b"c" * 32,), forgotten=(b"f" * 32,))
    assert Index.open(keys.data, index.seal(keys.data, suite, SALT)) == index
    lock = LockRecord("h", "u", 1, "backup", "shared", 5)
    assert LockRecord.open(keys.data, lock.seal(keys.data, suite, SALT)) == lock


def test_snapshot_served_as_index_is_refused(keys: RepositoryKeys) -> None:
    sealed = snapshot().seal(keys.data, Suite.AES_256_GCM, SALT)
    with pytest.raises(IntegrityError):
        Index.open(keys.data, sealed)


def test_sealed_record_bit_flips_and_truncations(keys: RepositoryKeys) -> None:
    sealed = snapshot().seal(keys.data, Suite.AES_256_GCM, SALT)
    for cut in range(len(sealed)):
        with pytest.raises(KeepError):
            open_record(keys.data, ObjectKind.SNAPSHOT, sealed[:cut])
    for byte in range(8, len(sealed)):
        damaged = bytearray(sealed)
        damaged[byte] ^= 0x10
        with pytest.raises(IntegrityError):
            Snapshot.open(keys.data, bytes(damaged))


def test_decoded_nodes_share_what_every_node_repeats_but_never_without_bound() -> None:
    """A restore holds a node per file: mode, owner and group names and the
    file system's id are kept once, not per node (equal values, same object);
    a tree of ever-new values does not grow the shared table past its cap."""

    def node(i: int, user: str) -> Node:
        name = f"f{i:06}".encode()
        return Node(name, NodeType.FILE, 0o644, 70_000, 70_001, user, "staff" * 2, device_id=2**40 + 3)

    nodes = Tree.from_bytes(Tree(tuple(node(i, "alice" * 3) for i in range(50))).to_bytes()).nodes
    assert nodes[0] == node(0, "alice" * 3)
    for field in ("mode", "uid", "gid", "user", "group", "device_id"):
        assert len({id(getattr(n, field)) for n in nodes}) == 1, field
    many = Tree(tuple(node(i, f"user{i}") for i in range(tree._SHARED_MAX + 10)))
    decoded = Tree.from_bytes(many.to_bytes())
    assert decoded == many
    assert len(tree._SHARED) <= tree._SHARED_MAX  # one entry per combination, up to the cap


_u64 = st.integers(0, 2**64 - 1)
_nodes = st.builds(
    Node,
    name=st.binary(min_size=1, max_size=20).filter(
        lambda n: b"/" not in n and b"\0" not in n and n not in (b".", b"..")
    ),
    type=st.sampled_from(NodeType),
    mode=st.integers(0, 0o7777),
    uid=st.integers(0, 2**32 - 1),
    gid=st.integers(0, 2**32 - 1),
    user=st.text(max_size=8),
    group=st.text(max_size=8),
    mtime_ns=st.integers(-(2**63), 2**63 - 1),
    ctime_ns=st.integers(-(2**63), 2**63 - 1),
    size=st.integers(0, 2**63 - 1),
    inode=_u64,
    links=_u64,
    device_id=_u64,
    rdev=_u64,
    xattrs=st.lists(st.tuples(st.binary(min_size=1, max_size=8), st.binary(max_size=8)), max_size=3).map(
        tuple
    ),
    target=st.binary(max_size=8),
    content=st.lists(st.binary(min_size=32, max_size=32), max_size=4).map(tuple),
    subtree=st.none() | st.binary(min_size=32, max_size=32),
)


@settings(max_examples=300)
@given(st.lists(_nodes, max_size=6, unique_by=lambda n: n.name))
def test_a_tree_encodes_its_nodes_field_by_field(nodes: list[Node]) -> None:
    """Trees are encoded from the named tuples themselves (no list per node):
    the bytes must be exactly those of each node's fields spelled out as
    msgpack arrays of plain ints, bytes, strings and arrays, and decode back."""
    nodes.sort(key=lambda n: n.name)
    spelled = [
        [
            n.name, int(n.type), n.mode, n.uid, n.gid, n.user, n.group, n.mtime_ns, n.ctime_ns, n.size,
            n.inode, n.links, n.device_id, n.rdev, [[k, v] for k, v in n.xattrs], n.target,
            list(n.content), n.subtree,
        ]
        for n in nodes
    ]  # fmt: skip
    data = Tree(tuple(nodes)).to_bytes()
    assert data == msgcodec.pack([tree.TREE_VERSION, spelled])
    assert msgcodec.unpack(data, tree.TREE_RAW_MAX) == [tree.TREE_VERSION, spelled]


@given(
    st.sampled_from(BlobType),
    st.binary(min_size=32, max_size=32),
    st.sampled_from(Codec),
    _u64,
    _u64,
    _u64,
    _u64,
)
def test_a_toc_entry_encodes_field_by_field(
    kind: BlobType, blob: bytes, codec: Codec, offset: int, length: int, raw: int, frame: int
) -> None:
    entry = TocEntry(kind, blob, codec, offset, length, raw, frame)
    assert msgcodec.pack(entry.to_list()) == msgcodec.pack([int(kind), blob, int(codec), offset, length, raw])
