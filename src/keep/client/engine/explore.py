"""Looking into history without restoring: find entries across snapshots
and diff two snapshots (`keep find`, `keep diff`; `keep dump` streams
entries out in `dump.py`).

Trees are read through the repository's tree cache, and whatever two
snapshots share is looked at once: `find` remembers its answer per (tree,
place) and `diff` skips every subtree whose id is the same on both sides.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from keep.client.engine.patterns import Patterns
from keep.client.engine.repository import Repository, SnapshotInfo
from keep.protocol.tree import Node, NodeType, Tree

Match = Callable[[bytes, Node], bool]


def path_matcher(pattern: str | bytes, ignore_case: bool = False) -> Callable[[bytes, Node | None], bool]:
    """One pattern (git's rules, patterns.py) as a test of an absolute path
    and, where known, its entry (a directory-only pattern needs to know)."""
    selector = Patterns([pattern], ignore_case)

    def match(path: bytes, node: Node | None = None) -> bool:
        return selector.match(path, lambda: node is not None and node.type is NodeType.DIR)

    return match


def name_matcher(pattern: str, ignore_case: bool = False) -> Match:
    """`path_matcher` for `find`'s (path, node) pairs."""
    return path_matcher(pattern, ignore_case)


def walk(repo: Repository, tree_id: bytes, prefix: bytes = b"") -> Iterator[tuple[bytes, Node]]:
    """Every (path, node) below a tree, depth first."""
    for node in _nodes(repo, tree_id):
        path = prefix + b"/" + node.name
        yield path, node
        if node.type is NodeType.DIR and node.subtree is not None:
            yield from walk(repo, node.subtree, path)


# find ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Found:
    snapshot: SnapshotInfo
    matches: list[tuple[bytes, Node]]


def find(repo: Repository, snapshots: Iterable[SnapshotInfo], match: Match) -> Iterator[Found]:
    """Per snapshot (with at least one hit), the entries `match` accepts."""
    memo: dict[tuple[bytes, bytes], list[tuple[bytes, Node]]] = {}

    def under(tree_id: bytes, prefix: bytes) -> list[tuple[bytes, Node]]:
        key = (tree_id, prefix)
        if key not in memo:
            hits = []
            for node in _nodes(repo, tree_id):
                path = prefix + b"/" + node.name
                if match(path, node):
                    hits.append((path, node))
                if node.type is NodeType.DIR and node.subtree is not None:
                    hits += under(node.subtree, path)
            memo[key] = hits
        return memo[key]

    for info in snapshots:
        hits = under(info.snapshot.tree, b"")
        if hits:
            yield Found(info, hits)


# diff ---------------------------------------------------------------------------------

ADDED, REMOVED, CONTENT, METADATA, TYPE = "+", "-", "M", "U", "T"  # restic's letters


@dataclass
class Difference:
    changes: list[tuple[str, bytes, Node]]  # (kind, path, the newer node — or the removed one)
    bytes_added: int = 0  # data of the differing entries that is new in the second snapshot
    bytes_removed: int = 0  # … and that only the first snapshot had


def diff(repo: Repository, first: bytes, second: bytes, path: bytes = b"") -> Difference:
    """What changed from tree `first` to tree `second` (both the root of a
    snapshot), below `path` if given."""
    result = Difference([])
    old_blobs: set[bytes] = set()
    new_blobs: set[bytes] = set()
    a, b = _subtree_at(repo, first, path), _subtree_at(repo, second, path)
    _diff_trees(repo, a, b, path, result, old_blobs, new_blobs)
    result.bytes_added = _raw_size(repo, new_blobs - old_blobs)
    result.bytes_removed = _raw_size(repo, old_blobs - new_blobs)
    return result


def _diff_trees(
    repo: Repository,
    a: bytes | None,
    b: bytes | None,
    prefix: bytes,
    out: Difference,
    old_blobs: set[bytes],
    new_blobs: set[bytes],
) -> None:
    if a == b:
        return  # the same subtree: nothing below differs
    old = {n.name: n for n in _nodes(repo, a)}
    new = {n.name: n for n in _nodes(repo, b)}
    for name in sorted(old.keys() | new.keys()):
        path = prefix + b"/" + name
        before, after = old.get(name), new.get(name)
        if after is None and before is not None:
            _all(repo, REMOVED, path, before, out, old_blobs)
        elif before is None and after is not None:
            _all(repo, ADDED, path, after, out, new_blobs)
        elif before is not None and after is not None:
            if before.type is not after.type:
                out.changes.append((TYPE, path, after))
                old_blobs.update(before.content)
                new_blobs.update(after.content)
            elif before.type is NodeType.FILE and before.content != after.content:
                out.changes.append((CONTENT, path, after))
                old_blobs.update(before.content)
                new_blobs.update(after.content)
            elif _metadata(before) != _metadata(after):
                out.changes.append((METADATA, path, after))
            if before.type is NodeType.DIR and after.type is NodeType.DIR:
                _diff_trees(repo, before.subtree, after.subtree, path, out, old_blobs, new_blobs)


def _all(repo: Repository, kind: str, path: bytes, node: Node, out: Difference, blobs: set[bytes]) -> None:
    """An entry added or removed whole: it and everything below it."""
    out.changes.append((kind, path, node))
    blobs.update(node.content)
    if node.type is NodeType.DIR and node.subtree is not None:
        for child in _nodes(repo, node.subtree):
            _all(repo, kind, path + b"/" + child.name, child, out, blobs)


def _metadata(node: Node) -> tuple[object, ...]:
    """What `keep restore` sets besides the content (times of directories
    change with their entries, so directories compare by mode and owner)."""
    mtime = 0 if node.type is NodeType.DIR else node.mtime_ns
    return (node.mode, node.uid, node.gid, mtime, node.xattrs, node.target, node.rdev)


def _nodes(repo: Repository, tree_id: bytes | None) -> tuple[Node, ...]:
    return () if tree_id is None else Tree.from_bytes(repo.read_tree_bytes(tree_id)).nodes


def _raw_size(repo: Repository, blobs: set[bytes]) -> int:
    total = 0
    for blob in blobs:
        loc = repo.locate(blob)
        total += loc.entry.raw_length if loc is not None else 0
    return total


def _subtree_at(repo: Repository, root: bytes, path: bytes) -> bytes | None:
    """The tree id of directory `path` in the snapshot with root `root`
    (None if the snapshot has no directory there)."""
    if not path.strip(b"/"):
        return root
    node = node_at(repo, root, path)
    return node.subtree if node is not None and node.type is NodeType.DIR else None


# dump ---------------------------------------------------------------------------------


def node_at(repo: Repository, root: bytes, path: bytes) -> Node | None:
    """The entry at absolute `path` in the snapshot with root tree `root`."""
    tree: bytes | None = root
    node = None
    for part in [p for p in path.split(b"/") if p]:
        if tree is None:
            return None
        node = next((n for n in _nodes(repo, tree) if n.name == part), None)
        if node is None:
            return None
        tree = node.subtree if node.type is NodeType.DIR else None
    return node


# stats --------------------------------------------------------------------------------

MODES = ("restore-size", "files-by-contents", "raw-data")


@dataclass
class Sizes:
    mode: str
    snapshots: int = 0
    files: int = 0  # restore-size: files restored; files-by-contents: distinct contents
    bytes: int = 0  # what those files hold; raw-data: the blobs' size before compression
    blobs: int = 0  # raw-data: distinct blobs (trees and data)
    stored_bytes: int = 0  # raw-data: the same blobs as stored (compressed, sealed)


def sizes(repo: Repository, snapshots: Iterable[SnapshotInfo], mode: str) -> Sizes:
    """restic's `stats` modes over these snapshots: restore-size (what a
    restore of each would write, summed), files-by-contents (distinct file
    contents), raw-data (distinct blobs, raw and as stored). Each tree is read
    once however many snapshots share it."""
    out = Sizes(mode)
    per_tree: dict[bytes, tuple[int, int]] = {}  # restore-size: tree id -> (files, bytes) below it
    seen_trees: set[bytes] = set()
    contents: dict[tuple[bytes, ...], int] = {}
    blobs: set[bytes] = set()

    def restore_size(tree_id: bytes) -> tuple[int, int]:
        if tree_id not in per_tree:
            files = size = 0
            for node in _nodes(repo, tree_id):
                if node.type is NodeType.FILE:
                    files, size = files + 1, size + node.size
                elif node.type is NodeType.DIR and node.subtree is not None:
                    f, s = restore_size(node.subtree)
                    files, size = files + f, size + s
            per_tree[tree_id] = (files, size)
        return per_tree[tree_id]

    def distinct(tree_id: bytes) -> None:
        if tree_id in seen_trees:
            return
        seen_trees.add(tree_id)
        blobs.add(tree_id)
        for node in _nodes(repo, tree_id):
            if node.type is NodeType.FILE:
                contents[tuple(node.content)] = node.size
                blobs.update(node.content)
            elif node.type is NodeType.DIR and node.subtree is not None:
                distinct(node.subtree)

    for info in snapshots:
        out.snapshots += 1
        if mode == "restore-size":
            files, size = restore_size(info.snapshot.tree)
            out.files, out.bytes = out.files + files, out.bytes + size
        else:
            distinct(info.snapshot.tree)
    if mode == "files-by-contents":
        out.files, out.bytes = len(contents), sum(contents.values())
    elif mode == "raw-data":
        out.blobs = len(blobs)
        for blob in blobs:
            loc = repo.locate(blob)
            if loc is not None:
                out.bytes += loc.entry.raw_length
                out.stored_bytes += loc.entry.length
    return out
