"""Looking into history without restoring: find entries across snapshots,
diff two snapshots, and stream a file or a directory out of one (`keep
find`, `keep diff`, `keep dump`).

Trees are read through the repository's tree cache, and whatever two
snapshots share is looked at once: `find` remembers its answer per (tree,
place) and `diff` skips every subtree whose id is the same on both sides.
`dump` streams one blob at a time, so memory stays bounded whatever the size;
every blob is authenticated and re-hashed before its bytes are written, as
in a restore.
"""

from __future__ import annotations

import os
import stat
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from keep.client.engine.patterns import Patterns
from keep.client.engine.repository import Repository, SnapshotInfo
from keep.protocol.errors import NotFoundError
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


class BlobReader:
    """A file's content as a stream, one verified blob at a time."""

    def __init__(self, repo: Repository, content: Iterable[bytes]) -> None:
        self._repo = repo
        self._blobs = iter(content)
        self._buffer = memoryview(b"")

    def read(self, size: int = -1) -> bytes:
        out = bytearray()
        while size < 0 or len(out) < size:
            if not self._buffer:
                blob = next(self._blobs, None)
                if blob is None:
                    break
                self._buffer = memoryview(self._repo.read_blob(blob))
            take = len(self._buffer) if size < 0 else min(size - len(out), len(self._buffer))
            out += self._buffer[:take]
            self._buffer = self._buffer[take:]
        return bytes(out)


def dump_file(repo: Repository, node: Node, out: BinaryIO) -> int:
    """A regular file's bytes to `out`; the number written."""
    written = 0
    for blob in node.content:
        data = repo.read_blob(blob)
        out.write(data)
        written += len(data)
    return written


def dump_tree(repo: Repository, root: bytes, path: bytes, out: BinaryIO, archive: str = "tar") -> int:
    """The directory at `path` as a tar (POSIX pax) or zip stream on `out`,
    names relative to its parent, with modes, owners, times, symlinks,
    hardlinks (tar) and xattrs (tar); entries written."""
    node = node_at(repo, root, path)
    if node is None or node.type is not NodeType.DIR:
        raise NotFoundError(f"{os.fsdecode(path)} is not a directory in this snapshot")
    base = os.path.basename(path.rstrip(b"/")) or b"root"
    entries = [(base, node), *(walk(repo, node.subtree, base) if node.subtree is not None else ())]
    if archive == "zip":
        return _zip(repo, entries, out)
    return _tar(repo, entries, out)


_TAR_TYPES = {
    NodeType.FILE: tarfile.REGTYPE,
    NodeType.DIR: tarfile.DIRTYPE,
    NodeType.SYMLINK: tarfile.SYMTYPE,
    NodeType.FIFO: tarfile.FIFOTYPE,
    NodeType.CHARDEV: tarfile.CHRTYPE,
    NodeType.BLOCKDEV: tarfile.BLKTYPE,
}


def _tar(repo: Repository, entries: list[tuple[bytes, Node]], out: BinaryIO) -> int:
    first_names: dict[tuple[int, int], str] = {}
    # Names that are not UTF-8 survive as raw bytes (pax hdrcharset=BINARY).
    with tarfile.open(
        fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape"
    ) as tar:
        for path, node in entries:
            info = tarfile.TarInfo(os.fsdecode(path))
            info.type = _TAR_TYPES[node.type]
            info.mode, info.uid, info.gid = node.mode, node.uid, node.gid
            info.uname, info.gname = node.user, node.group
            info.mtime = node.mtime_ns / 1e9
            info.pax_headers = {"mtime": f"{node.mtime_ns // 10**9}.{node.mtime_ns % 10**9:09d}"}
            for name, value in node.xattrs:
                info.pax_headers["SCHILY.xattr." + os.fsdecode(name)] = value.decode(
                    "utf-8", "surrogateescape"
                )
            if node.type is NodeType.SYMLINK:
                info.linkname = os.fsdecode(node.target)
            elif node.type in (NodeType.CHARDEV, NodeType.BLOCKDEV):
                info.devmajor, info.devminor = os.major(node.rdev), os.minor(node.rdev)
            elif node.type is NodeType.FILE:
                key = (node.device_id, node.inode)
                if node.links > 1 and key in first_names:
                    info.type, info.linkname = tarfile.LNKTYPE, first_names[key]
                else:
                    if node.links > 1:
                        first_names[key] = info.name
                    info.size = node.size
                    tar.addfile(info, BlobReader(repo, node.content))
                    continue
            tar.addfile(info)
    return len(entries)


def _zip(repo: Repository, entries: list[tuple[bytes, Node]], out: BinaryIO) -> int:
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for path, node in entries:
            name = os.fsdecode(path) + ("/" if node.type is NodeType.DIR else "")
            info = zipfile.ZipInfo(name, _zip_time(node.mtime_ns))
            kind = {NodeType.DIR: stat.S_IFDIR, NodeType.SYMLINK: stat.S_IFLNK}.get(node.type, stat.S_IFREG)
            info.external_attr = (kind | node.mode) << 16
            if node.type is NodeType.FILE:
                with archive.open(info, "w", force_zip64=True) as member:
                    dump_file(repo, node, member)  # type: ignore[arg-type]
            elif node.type is NodeType.SYMLINK:
                archive.writestr(info, node.target)
            elif node.type is NodeType.DIR:
                archive.writestr(info, b"")
            # FIFOs and devices have no place in a zip file
    return len(entries)


def _zip_time(mtime_ns: int) -> tuple[int, int, int, int, int, int]:
    t = time.localtime(max(mtime_ns // 10**9, 315532800))  # zip cannot hold times before 1980
    return (max(t.tm_year, 1980), t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)


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
