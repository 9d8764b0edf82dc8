"""Trees: one directory's entries, canonically serialized (docs/format.md §9).

A tree is stored as a blob of type TREE, so an unchanged directory
deduplicates. Names are raw bytes (non-UTF-8 names survive). Decoding enforces
what a restore relies on: every name is a single, non-empty path component
(no "/", NUL, "." or ".."), and names are strictly increasing — so duplicates are
impossible — before any caller sees the entries.

Record: [version, [node, ...]] with node =
[name, type, mode, uid, gid, user, group, mtime_ns, ctime_ns, size, inode,
 links, device_id, rdev, xattrs [[name, value], ...], target, content [id, ...],
 subtree]
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass
from typing import Any, NamedTuple, Self

from keep.protocol import msgcodec
from keep.protocol.blob import BLOB_ID_SIZE
from keep.protocol.errors import FormatError
from keep.protocol.limits import (
    NAME_MAX,
    TREE_MAX_ENTRIES,
    TREE_RAW_MAX,
    XATTR_MAX_TOTAL,
)

TREE_VERSION = 1
NODE_FIELDS = 18
I64_MIN = -(2**63)
I64_MAX = 2**63 - 1
U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
USER_NAME_MAX = 256
CONTENT_MAX = TREE_RAW_MAX // BLOB_ID_SIZE


class NodeType(enum.IntEnum):
    FILE = 1
    DIR = 2
    SYMLINK = 3
    FIFO = 4
    CHARDEV = 5
    BLOCKDEV = 6


def check_name(name: bytes) -> bytes:
    """A name must be exactly one path component."""
    if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
        raise FormatError("tree entry name is not a single path component")
    if len(name) > NAME_MAX:
        raise FormatError("tree entry name is too long")
    return name


class Node(NamedTuple):
    """One tree entry. A named tuple rather than a frozen dataclass: one is
    built for every file a backup reads and every entry of a parent tree it
    compares against, and a frozen dataclass's __init__ cost ~4 µs of the
    ~60 µs of Python per small file."""

    name: bytes
    type: NodeType
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    user: str = ""
    group: str = ""
    mtime_ns: int = 0
    ctime_ns: int = 0
    size: int = 0
    inode: int = 0
    links: int = 1
    device_id: int = 0
    rdev: int = 0
    xattrs: tuple[tuple[bytes, bytes], ...] = ()
    target: bytes = b""
    content: tuple[bytes, ...] = ()
    subtree: bytes | None = None

    def to_list(self) -> list[object]:
        return [
            self.name,
            int(self.type),
            self.mode,
            self.uid,
            self.gid,
            self.user,
            self.group,
            self.mtime_ns,
            self.ctime_ns,
            self.size,
            self.inode,
            self.links,
            self.device_id,
            self.rdev,
            [list(x) for x in self.xattrs],
            self.target,
            list(self.content),
            self.subtree,
        ]

    @classmethod
    def from_list(cls, value: object) -> Self:
        """Decode and validate one node. A daily backup decodes every entry
        of every parent tree, so the decision is one combined test of all
        fields (the field-by-field helpers cost 10 of 14 µs per node);
        `check_node_fields` names the field when it fails."""
        f = msgcodec.as_list(value, "tree node", NODE_FIELDS)
        (name, kind, mode, uid, gid, user, group, mtime, ctime, size, inode, links, device, rdev,
         xattrs, target, content, subtree) = f  # fmt: skip
        node_type = _NODE_TYPES.get(kind) if type(kind) is int else None
        if not (
            type(name) is bytes
            and 0 < len(name) <= NAME_MAX
            and name not in _DOT_NAMES
            and b"/" not in name
            and b"\0" not in name
            and node_type is not None
            and type(mode) is type(uid) is type(gid) is type(mtime) is type(ctime) is int
            and type(size) is type(inode) is type(links) is type(device) is type(rdev) is int
            and 0 <= mode <= 0o7777
            and 0 <= uid <= U32_MAX
            and 0 <= gid <= U32_MAX
            and I64_MIN <= mtime <= I64_MAX
            and I64_MIN <= ctime <= I64_MAX
            and 0 <= size <= I64_MAX
            and 0 <= inode <= U64_MAX
            and 0 <= links <= U64_MAX
            and 0 <= device <= U64_MAX
            and 0 <= rdev <= U64_MAX
            and type(user) is str
            and len(user) <= USER_NAME_MAX
            and type(group) is str
            and len(group) <= USER_NAME_MAX
            and type(xattrs) is list
            and type(target) is bytes
            and len(target) <= NAME_MAX
            and type(content) is list
            and len(content) <= CONTENT_MAX
            and (
                # one blob, the common case, without a generator
                (len(content) == 1 and type(content[0]) is bytes and len(content[0]) == BLOB_ID_SIZE)
                or all(type(c) is bytes and len(c) == BLOB_ID_SIZE for c in content)
            )
            and (subtree is None or (type(subtree) is bytes and len(subtree) == BLOB_ID_SIZE))
            and (subtree is not None) == (node_type is NodeType.DIR)
            and (not content or node_type is NodeType.FILE)
        ):
            check_node_fields(f)
            raise FormatError("tree node is malformed")  # not reached: the check names the field
        owner = (mode, uid, gid, user, group, device)
        shared = _SHARED.get(owner)
        if shared is None:
            shared = _SHARED.setdefault(owner, owner) if len(_SHARED) < _SHARED_MAX else owner
        mode, uid, gid, user, group, device = shared
        return _new_tuple(cls, (
            name, node_type, mode, uid, gid, user, group, mtime, ctime, size, inode, links, device, rdev,
            _xattrs(xattrs) if xattrs else (), target, tuple(content), subtree,
        ))  # fmt: skip


_NODE_TYPES = {int(t): t for t in NodeType}
# Values that nearly every node of a tree repeats (mode, owner, group, file
# system) are kept once, not once per decoded node: a restore holds a node per
# file, and as separate objects these cost ~190 bytes of each. They are
# looked up together, one lookup instead of six (with the named tuple built
# at once and a one-blob content checked without a generator, a node
# decodes in 1.6 µs instead of 3.3). New combinations are added while the
# table holds fewer than _SHARED_MAX (a tree cannot make it grow without
# bound).
_SHARED: dict[tuple[int, int, int, str, str, int], tuple[int, int, int, str, str, int]] = {}
_SHARED_MAX = 4096
_new_tuple = tuple.__new__  # a named tuple built from its fields at once, as `_make` does


_DOT_NAMES = frozenset((b".", b".."))


def _xattrs(raw: list[Any]) -> tuple[tuple[bytes, bytes], ...]:
    xattrs = tuple(
        (
            msgcodec.as_bytes(x[0], "xattr name", max_size=NAME_MAX),
            msgcodec.as_bytes(x[1], "xattr value", max_size=XATTR_MAX_TOTAL),
        )
        for x in (msgcodec.as_list(x, "xattr", 2) for x in raw)
    )
    if sum(len(n) + len(v) for n, v in xattrs) > XATTR_MAX_TOTAL:
        raise FormatError("tree node's xattrs are too large")
    return xattrs


def check_node_fields(f: list[Any]) -> None:
    """Field by field, what `Node.from_list` accepts; raises a `FormatError`
    naming the first bad field. Used to explain a refusal (and by the tests,
    as the reference the combined test must agree with)."""
    msgcodec.as_list(f, "tree node", NODE_FIELDS)
    check_name(msgcodec.as_bytes(f[0], "name"))
    try:
        node_type = NodeType(msgcodec.as_int(f[1], "node type", 0, 255))
    except ValueError:
        raise FormatError("tree node has an unknown type") from None
    msgcodec.as_int(f[2], "mode", 0, 0o7777)
    msgcodec.as_int(f[3], "uid", 0, U32_MAX)
    msgcodec.as_int(f[4], "gid", 0, U32_MAX)
    msgcodec.as_str(f[5], "user", USER_NAME_MAX)
    msgcodec.as_str(f[6], "group", USER_NAME_MAX)
    msgcodec.as_int(f[7], "mtime", I64_MIN, I64_MAX)
    msgcodec.as_int(f[8], "ctime", I64_MIN, I64_MAX)
    msgcodec.as_int(f[9], "size", 0, I64_MAX)
    msgcodec.as_int(f[10], "inode")
    msgcodec.as_int(f[11], "links")
    msgcodec.as_int(f[12], "device id")
    msgcodec.as_int(f[13], "rdev")
    _xattrs(msgcodec.as_list(f[14], "xattrs"))
    msgcodec.as_bytes(f[15], "symlink target", max_size=NAME_MAX)
    content = msgcodec.as_list(f[16], "content")
    if len(content) > CONTENT_MAX:
        raise FormatError("tree node lists too many blobs")
    for c in content:
        msgcodec.as_bytes(c, "content id", BLOB_ID_SIZE)
    subtree = None if f[17] is None else msgcodec.as_bytes(f[17], "subtree", BLOB_ID_SIZE)
    if (subtree is not None) != (node_type is NodeType.DIR):
        raise FormatError("only directories have, and must have, a subtree")
    if content and node_type is not NodeType.FILE:
        raise FormatError("only files have content")


@dataclass(frozen=True, slots=True)
class Tree:
    nodes: tuple[Node, ...]

    def to_bytes(self) -> bytes:
        names = [n.name for n in self.nodes]
        if any(a >= b for a, b in itertools.pairwise(names)):
            raise FormatError("tree nodes must be sorted by name without duplicates")
        # A node is a named tuple of msgpack-native fields (its enum is an
        # int, its tuples arrays), so it encodes exactly as `to_list` spells
        # it out, without building a list per node (the vectors check this).
        return msgcodec.pack([TREE_VERSION, self.nodes])

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> Self:
        version, raw_nodes = msgcodec.as_list(msgcodec.unpack(data, TREE_RAW_MAX), "tree", 2)
        if version != TREE_VERSION:
            raise FormatError(f"unsupported tree version {version}")
        raw_nodes = msgcodec.as_list(raw_nodes, "tree nodes")
        if len(raw_nodes) > TREE_MAX_ENTRIES:
            raise FormatError("tree has too many entries")
        nodes = None if _compiled is None else _compiled.decode(raw_nodes, *_COMPILED_ARGS)
        return cls(decode_nodes(raw_nodes) if nodes is None else nodes)


def decode_nodes(raw_nodes: list[Any]) -> tuple[Node, ...]:
    """A tree's nodes, decoded and checked in Python: the reference that
    `_nodes.c` must agree with, and what names the fault when it refuses."""
    nodes = tuple(Node.from_list(n) for n in raw_nodes)
    for a, b in itertools.pairwise(nodes):
        if a.name >= b.name:
            raise FormatError("tree entries are not strictly sorted (duplicate names?)")
    return nodes


# The compiled fast path (src/keep/protocol/_nodes.c, built when keep is
# installed with a C compiler and Python's headers): the same checks and the
# same shared owner fields in one pass, 0.39 µs a node against 2.96 µs for
# `decode_nodes` (msgpack's own 0.5 µs comes before either). It returns None
# for anything it does not accept, and `decode_nodes` then raises the error
# that names the field. Used only if it was built for these limits.
_compiled: Any
try:
    from keep.protocol import _nodes as _compiled  # type: ignore[attr-defined, no-redef]
except ImportError:  # pragma: no cover - no compiler where this was installed
    _compiled = None
LIMITS = (NODE_FIELDS, NAME_MAX, USER_NAME_MAX, BLOB_ID_SIZE, CONTENT_MAX)
if _compiled is not None and _compiled.LIMITS != LIMITS:
    _compiled = None
_KINDS = tuple(_NODE_TYPES.get(k) for k in range(max(_NODE_TYPES) + 1))  # a node type by its number
_COMPILED_ARGS = (Node, _KINDS, _SHARED, _SHARED_MAX, _xattrs)
