"""Packs blobs and uploads them, spreading data blobs over several open packs.

Data blobs go to one of OPEN_PACKS open packs chosen at random, so a pack's
padded size is the sum of an unpredictable mix of chunks and never a run of one
file's chunk lengths (docs/threat-model.md). Tree blobs go to their own pack
lane so that listing and restore planning fetch only small packs. A pack is
closed at PACK_TARGET bytes, padded, and uploaded in the background; its TOC
entries join the index only once the upload has succeeded. Index objects are
written every INDEX_EVERY packs and at the end, so an interrupted backup loses at
most that many packs' worth of indexing — and `Repository.reindex_orphan_packs`
recovers even those.
"""

from __future__ import annotations

import hashlib
import secrets
from concurrent.futures import Future
from dataclasses import dataclass

from keep.client.repository import Repository
from keep.protocol.blob import BlobType
from keep.protocol.compression import Codec
from keep.protocol.envelope import ObjectCipher, ObjectKind
from keep.protocol.index import IndexedPack
from keep.protocol.limits import OPEN_PACKS, PACK_MIN_PADDED, PACK_TARGET
from keep.protocol.pack import PackWriter

INDEX_EVERY = 32  # packs per index object (~512 MiB of data)
PACK_BLOBS_MAX = 20_000  # close a pack early when it holds this many blobs


@dataclass
class PackerStats:
    packs: int = 0
    blobs: int = 0
    bytes_raw: int = 0
    bytes_stored: int = 0  # sealed, before padding
    bytes_uploaded: int = 0  # padded pack sizes


@dataclass
class _Open:
    writer: PackWriter
    salt: bytes


class Packer:
    """Not thread-safe: one engine thread adds blobs."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.stats = PackerStats()
        self._data: list[_Open] = []
        self._tree: _Open | None = None
        self._pending: set[bytes] = set()  # blob ids added but not yet indexed
        self._uploads: list[tuple[Future[str], IndexedPack, int]] = []
        self._unsaved: list[IndexedPack] = []

    def _new(self) -> _Open:
        salt = self.repo.salt()
        return _Open(
            PackWriter(ObjectCipher.new(self.repo.keys.data, ObjectKind.PACK, self.repo.suite, salt)), salt
        )

    def known(self, blob_id: bytes) -> bool:
        return blob_id in self.repo.index or blob_id in self._pending

    def add(
        self, blob_type: BlobType, blob_id: bytes, codec: Codec, payload: bytes | memoryview, raw: int
    ) -> bool:
        """Seal the blob into an open pack; False if it is already stored."""
        if self.known(blob_id):
            return False
        if blob_type is BlobType.TREE:
            if self._tree is None:
                self._tree = self._new()
            target = self._tree
        else:
            if len(self._data) < OPEN_PACKS:
                self._data.append(self._new())
            target = self._data[secrets.randbelow(len(self._data))]
        target.writer.add(blob_type, blob_id, codec, payload, raw)
        self._pending.add(blob_id)
        self.stats.blobs += 1
        self.stats.bytes_raw += raw
        self.stats.bytes_stored += len(payload)
        if target.writer.size >= PACK_TARGET or target.writer.blob_count >= PACK_BLOBS_MAX:
            self._close(target)
        return True

    def _close(self, pack: _Open) -> None:
        if pack is self._tree:
            self._tree = None
        else:
            self._data.remove(pack)
        if pack.writer.blob_count == 0:
            return
        data = pack.writer.finish(PACK_MIN_PADDED)
        future = self.repo.remote.put_object_async("pack", data)
        self.stats.packs += 1
        self.stats.bytes_uploaded += len(data)
        indexed = IndexedPack(hashlib.sha256(data).digest(), self.repo.suite, pack.salt, pack.writer.entries)
        self._uploads.append((future, indexed, len(data)))
        self._collect(block=False)

    def _collect(self, block: bool) -> None:
        """Move finished uploads into the index; raise the first upload error."""
        still = []
        for future, pack, size in self._uploads:
            if block or future.done():
                future.result()
                self.repo.add_pack(pack)
                self.repo.pack_sizes[pack.pack_id.hex()] = size
                self._pending.difference_update(e.blob_id for e in pack.entries)
                self._unsaved.append(pack)
            else:
                still.append((future, pack, size))
        self._uploads = still
        if len(self._unsaved) >= INDEX_EVERY:
            self._save_index()

    def _save_index(self) -> None:
        if self._unsaved:
            self.repo.save_index(self._unsaved)
            self._unsaved = []

    def flush(self) -> None:
        """Close every open pack (merging small data packs into one), wait for
        all uploads and write the index. After this, every added blob is stored
        and indexed."""
        leftovers = list(self._data)
        if len(leftovers) > 1 and sum(p.writer.size for p in leftovers) < PACK_TARGET:
            # A small tail: one pack instead of several tiny padded ones.
            merged = self._merge(leftovers)
            self._data = [merged]
        for pack in list(self._data):
            self._close(pack)
        if self._tree is not None:
            self._close(self._tree)
        self._collect(block=True)
        self._save_index()

    def _merge(self, packs: list[_Open]) -> _Open:
        """Re-seal the blobs of several open packs into one (they were never
        uploaded, so this leaks nothing)."""
        from keep.protocol.pack import PackReader

        merged = self._new()
        for pack in packs:
            data = pack.writer.finish(0)
            reader = PackReader.open(self.repo.keys.data, data)
            for entry in reader.entries:
                sealed = memoryview(data)[entry.offset : entry.offset + entry.length]
                payload = reader.cipher.open(entry.frame, sealed, entry.ad())
                merged.writer.add(entry.blob_type, entry.blob_id, entry.codec, payload, entry.raw_length)
        return merged
