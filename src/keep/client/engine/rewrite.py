"""Changing history, the owner only: `keep tag` (other tags) and `keep
rewrite` (a tree without the entries patterns select — a secret or a huge
cache backed up by mistake).

Snapshots are immutable objects, so each change writes a new snapshot in
place of the old: the same time, host, paths and parent, signed by the
owner (a device credential cannot make one, and only a signed snapshot's
time is trusted although it arrives later than it says — retention.py).
The new snapshots are stored first; the originals are then forgotten
through the owner-signed name-then-delete of `keep forget` (prune.forget):
an interruption leaves both, never neither. `keep rewrite` forgets the
originals only when told to; the data only they held goes at the next
prune.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from keep.client.engine.lease import Lease
from keep.client.engine.packer import Packer
from keep.client.engine.patterns import Patterns
from keep.client.engine.prune import forget
from keep.client.engine.repository import Repository, SnapshotInfo
from keep.protocol.blob import blob_id
from keep.protocol.errors import PermissionDeniedError
from keep.protocol.snapshot import Snapshot
from keep.protocol.tree import Node, NodeType, Tree


@dataclass(frozen=True, slots=True)
class Replaced:
    original: str
    replacement: str | None  # None: nothing changed, nothing written
    removed: int = 0  # entries a rewrite left out (each with everything below it)


def retagged(
    snapshot: Snapshot, add: Sequence[str], remove: Sequence[str], set_to: Sequence[str] | None
) -> Snapshot:
    """The snapshot with its tags changed (`set_to` replaces them all first)."""
    tags = list(set_to) if set_to is not None else list(snapshot.tags)
    tags = [t for t in tags if t not in remove]
    tags += [t for t in add if t not in tags]
    return dataclasses.replace(snapshot, tags=tuple(tags), signature=b"")


def _is_dir(node: Node) -> bool:
    return node.type is NodeType.DIR


class TreeRewriter:
    """Trees without the entries `excluded` selects, stored as new tree
    blobs; a tree with nothing left out keeps its id (and its blob)."""

    def __init__(self, repo: Repository, excluded: Patterns) -> None:
        self.repo = repo
        self.excluded = excluded
        self.packer = Packer(repo)
        self.removed = 0
        self._done: dict[tuple[bytes, bytes], bytes] = {}  # (tree, path) -> new tree id

    def rewrite(self, tree_id: bytes, prefix: bytes = b"") -> bytes:
        key = (tree_id, prefix)
        if key in self._done:
            return self._done[key]
        tree = Tree.from_bytes(self.repo.read_tree_bytes(tree_id))
        nodes = []
        for node in tree.nodes:
            path = prefix + b"/" + node.name
            if self.excluded.match(path, partial(_is_dir, node)):
                self.removed += 1
                continue
            if node.type is NodeType.DIR and node.subtree is not None:
                nodes.append(node._replace(subtree=self.rewrite(node.subtree, path)))
            else:
                nodes.append(node)
        new_id = tree_id
        if tuple(nodes) != tree.nodes:
            data = Tree(tuple(nodes)).to_bytes()
            new_id = blob_id(self.repo.keys.id, data)
            self.packer.add_tree(new_id, data)
        self._done[key] = new_id
        return new_id


def replace(
    repo: Repository, changes: Sequence[tuple[SnapshotInfo, Snapshot]], forget_originals: bool = True
) -> list[Replaced]:
    """Store each changed snapshot, owner-signed, then forget the originals
    (if asked). Unchanged snapshots are left as they are."""
    _owner(repo)
    with Lease(repo, purpose="tag") as lease:
        lease.confirm()
        done = _store(repo, changes)
    return _forget_originals(repo, done, forget_originals)


def rewrite(
    repo: Repository, snapshots: Sequence[SnapshotInfo], excluded: Patterns, forget_originals: bool
) -> list[Replaced]:
    """Each snapshot without what `excluded` selects. Under a shared lease,
    as a backup: the new trees are uploaded and indexed, the lease is
    confirmed (no prune can have judged them unreferenced), and only then
    are the snapshots that name them stored."""
    _owner(repo)
    rewriter = TreeRewriter(repo, excluded)
    changes, removed = [], []
    with Lease(repo, purpose="rewrite") as lease:
        try:
            for info in snapshots:
                before = rewriter.removed
                tree = rewriter.rewrite(info.snapshot.tree)
                removed.append(rewriter.removed - before)
                changes.append(
                    (info, dataclasses.replace(info.snapshot, tree=tree, summary={}, signature=b""))
                )
            rewriter.packer.flush()
        except BaseException:
            rewriter.packer.abort()
            raise
        lease.confirm()
        done = _store(repo, changes)
    done = [dataclasses.replace(r, removed=n) for r, n in zip(done, removed, strict=True)]
    return _forget_originals(repo, done, forget_originals)


def _owner(repo: Repository) -> None:
    if repo.owner_key is None:
        raise PermissionDeniedError("only the owner may change history: give the password")


def _store(repo: Repository, changes: Sequence[tuple[SnapshotInfo, Snapshot]]) -> list[Replaced]:
    owner = repo.owner_key
    if owner is None:
        raise PermissionDeniedError("only the owner may change history: give the password")
    out = []
    for info, new in changes:
        if dataclasses.replace(new, signature=b"") == dataclasses.replace(info.snapshot, signature=b""):
            out.append(Replaced(info.id, None))  # nothing changed: nothing written, nothing forgotten
        else:
            out.append(Replaced(info.id, repo.save_snapshot(new.signed(owner))))
    return out


def _forget_originals(repo: Repository, done: list[Replaced], forget_originals: bool) -> list[Replaced]:
    if forget_originals:
        forget(repo, [r.original for r in done if r.replacement is not None])
    return done
