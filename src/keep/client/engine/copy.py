"""`keep copy`: snapshots into another account, on this server or another
(moving to a new storage operator, or a second copy elsewhere).

The target has its own keys, so nothing can be copied as it is: every file
is read here (each blob verified, as a restore reads it), cut again with the
target's chunker key, and stored under the target's ids and encryption —
deduplicated against what the target already holds, so a second copy of
overlapping history uploads only what is new. Trees are rebuilt with the
target's ids; each copied snapshot keeps its time, host, paths, user and
tags, names no parent, and is signed by the target's owner (its time is
trusted although it arrives later than it says).

Resumable: each snapshot's data and trees are stored and indexed before the
snapshot itself, and a snapshot the target already has (same time, host,
paths, user and tags) is skipped, so a copy run again after an interruption
goes on where it stopped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from keep.client.engine.lease import Lease
from keep.client.engine.packer import Packer
from keep.client.engine.repository import Repository, SnapshotInfo
from keep.protocol.blob import BlobType, blob_id
from keep.protocol.chunker import Chunker
from keep.protocol.compression import BlobCompressor
from keep.protocol.errors import PermissionDeniedError
from keep.protocol.limits import CHUNK_MAX
from keep.protocol.snapshot import Snapshot
from keep.protocol.tree import NodeType, Tree

FEED = 2 * CHUNK_MAX  # bytes the chunker needs before it may cut (chunker.Chunker.cut)


@dataclass(frozen=True, slots=True)
class Copied:
    source: str
    target: str | None  # None: the target had it already
    bytes_read: int = 0  # file bytes read from the source for it


def identity(s: Snapshot) -> tuple[object, ...]:
    """What makes two snapshots the same backup across accounts."""
    return (s.time_ns, s.host, s.user, tuple(sorted(s.paths)), tuple(sorted(s.tags)))


class _Copier:
    def __init__(self, source: Repository, target: Repository) -> None:
        self.source = source
        self.target = target
        self.chunker = Chunker(target.keys.chunker)
        self.compressor = BlobCompressor()
        self.packer = Packer(target)
        self.bytes_read = 0
        self._trees: dict[bytes, bytes] = {}  # source tree id -> target tree id
        self._files: dict[tuple[bytes, ...], tuple[bytes, ...]] = {}  # source content -> target content

    def tree(self, tree_id: bytes) -> bytes:
        done = self._trees.get(tree_id)
        if done is not None:
            return done
        nodes = []
        for node in Tree.from_bytes(self.source.read_tree_bytes(tree_id)).nodes:
            if node.type is NodeType.DIR and node.subtree is not None:
                nodes.append(node._replace(subtree=self.tree(node.subtree)))
            elif node.type is NodeType.FILE and node.content:
                nodes.append(node._replace(content=self.content(node.content)))
            else:
                nodes.append(node)
        data = Tree(tuple(nodes)).to_bytes()
        new_id = blob_id(self.target.keys.id, data)
        self.packer.add_tree(new_id, data)
        self._trees[tree_id] = new_id
        return new_id

    def content(self, blobs: tuple[bytes, ...]) -> tuple[bytes, ...]:
        """A file's bytes, streamed blob by blob, cut with the target's key."""
        done = self._files.get(blobs)
        if done is not None:
            return done
        out: list[bytes] = []
        buffer = bytearray()
        for source_blob in blobs:
            data = self.source.read_blob(source_blob)  # authenticated and re-hashed
            self.bytes_read += len(data)
            buffer += data
            if len(buffer) >= FEED:
                self._cut(buffer, out, final=False)
        self._cut(buffer, out, final=True)
        result = tuple(out)
        self._files[blobs] = result
        return result

    def _cut(self, buffer: bytearray, out: list[bytes], final: bool) -> None:
        offset = 0
        with memoryview(buffer) as view:
            for length in self.chunker.cut(view, final):
                out.append(self._chunk(view[offset : offset + length]))
                offset += length
        del buffer[:offset]  # no view of the buffer is left: it may shrink

    def _chunk(self, chunk: memoryview) -> bytes:
        chunk_id = blob_id(self.target.keys.id, chunk)
        if not self.packer.known(chunk_id):
            codec, payload = self.compressor.compress(chunk)
            # a copy: the buffer the chunk is a view of is cut down after this
            self.packer.add(BlobType.DATA, chunk_id, codec, bytes(payload), len(chunk), check_index=False)
        return chunk_id


def copy(
    source: Repository,
    target: Repository,
    snapshots: Sequence[SnapshotInfo],
    on_copied: Callable[[Copied], None] | None = None,
) -> list[Copied]:
    """Copy `snapshots` (oldest first) into `target`, whose owner is logged
    in (`target.owner_key`); each result also goes to `on_copied`."""
    owner = target.owner_key
    if owner is None:
        raise PermissionDeniedError("copying needs the target account's owner: give its password")
    have = {identity(s.snapshot) for s in target.snapshots()}
    out: list[Copied] = []
    with Lease(source, purpose="copy"), Lease(target, purpose="copy") as lease:
        for info in sorted(snapshots, key=lambda s: (s.snapshot.time_ns, s.id)):
            if identity(info.snapshot) in have:
                done = Copied(info.id, None)
            else:
                copier = _Copier(source, target)
                try:
                    tree = copier.tree(info.snapshot.tree)
                    copier.packer.flush()  # data and trees stored and indexed before the snapshot
                except BaseException:
                    copier.packer.abort()
                    raise
                lease.confirm()
                new = dataclasses.replace(info.snapshot, tree=tree, parent=None, signature=b"")
                done = Copied(info.id, target.save_snapshot(new.signed(owner)), copier.bytes_read)
                have.add(identity(info.snapshot))
            out.append(done)
            if on_copied is not None:
                on_copied(done)
    return out
