"""`keep prune`: free the space of blobs no snapshot references, in two phases
that let backups from other devices run at the same time.

Phase one condemns: packs with no live blob, and packs repacked because too
little of them is live, are listed as condemned in a new index that replaces
all current ones. A condemned pack stays readable but no backup deduplicates
against it any more. Phase two deletes a condemned pack once no backup that
could have relied on it is still running: every lease other than prune's own
must have been granted after the condemning index arrived (plus
CONDEMN_MARGIN), and a snapshot written in between that needs the pack
resurrects it instead. When nothing else holds a lease, both phases happen in
one run. The reasoning, step by step, is in docs/engine.md "Prune".

What a pack holds is read from the pack itself (its authenticated TOC,
cached by pack id), never taken from an index: a pack that holds a live blob
is kept or repacked, never condemned or deleted, and the index objects prune
writes list what the packs really hold. Only owner-signed records condemn or
supersede (`Repository.load_index`), and prune signs its own. So records a
device credential could have written are never a reason to delete.

A blob that a snapshot references but no pack holds stops the prune before it
deletes anything (`keep check` says which files are affected). Packs whose TOC
cannot be read (damaged, or not written with this account's keys) are left
alone and reported by `keep check`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from keep.client.engine.lease import Lease
from keep.client.engine.packer import Packer
from keep.client.engine.prune_plan import REPACK_BELOW, plan
from keep.client.engine.repository import Repository, SnapshotInfo
from keep.protocol.api import LOCK_TTL_MAX, Route
from keep.protocol.compression import BlobDecompressor
from keep.protocol.errors import FormatError, IntegrityError, NotFoundError
from keep.protocol.index import IndexedPack
from keep.protocol.pack import PackReader, open_blob_payload
from keep.protocol.tree import NodeType, Tree

CONDEMN_MARGIN = 60  # seconds; covers the gap between an index's arrival time and its visibility
INDEX_PACKS = 256  # packs per index object that prune writes
DELETE_THREADS = 4


@dataclass
class PruneResult:
    snapshots: int = 0
    blobs_live: int = 0
    packs_kept: int = 0
    packs_repacked: int = 0
    packs_condemned: int = 0  # newly condemned (including repacked ones)
    packs_deleted: int = 0
    packs_waiting: int = 0  # condemned, kept until running backups end
    packs_resurrected: int = 0
    blobs_unreadable: int = 0  # live blobs whose copy in a repacked pack failed verification (not copied)
    locks_deleted: int = 0  # LOCK objects no live lease names any more
    phase: str = ""  # what the prune is doing now (progress)
    bytes_to_repack: int = 0  # stored size of the packs being repacked (progress)
    bytes_freed: int = 0
    bytes_downloaded: int = 0
    bytes_uploaded: int = 0
    seconds: float = 0.0


def forget(repo: Repository, snapshot_ids: list[str]) -> None:
    """Remove these snapshots (the owner: `repo.owner_key` set), under an
    exclusive lease. Named first, deleted second: an owner-signed index lists
    them as forgotten before their objects go, so no machine that saw them
    takes their absence for a server hiding a backup (docs/threat-model.md)."""
    if not snapshot_ids:
        return
    with Lease(repo, "exclusive", "forget"):
        repo.save_index([], forgotten=snapshot_ids)
        for snapshot_id in snapshot_ids:
            repo.remote.delete_object("snapshot", snapshot_id)


def live_blobs(repo: Repository, snapshots: Iterable[SnapshotInfo]) -> set[bytes]:
    """Every tree and data blob the snapshots reference; each tree is read once."""
    live: set[bytes] = set()
    stack = [s.snapshot.tree for s in snapshots]
    while stack:
        tree_id = stack.pop()
        if tree_id in live:
            continue
        live.add(tree_id)
        for node in Tree.from_bytes(repo.read_tree_bytes(tree_id)).nodes:
            if node.type is NodeType.FILE:
                live.update(node.content)
            elif node.subtree is not None:
                stack.append(node.subtree)
    return live


class Pruner:
    def __init__(
        self,
        repo: Repository,
        lease: Lease,
        repack_below: float = REPACK_BELOW,
        dry_run: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.repo = repo
        self.lease = lease
        self.repack_below = repack_below
        self.dry_run = dry_run
        self.clock = clock
        self.result = PruneResult()

    def run(self) -> PruneResult:
        started = self.clock()
        repo = self.repo
        # Orphan packs (from crashed backups) are indexed in memory only: this
        # run writes every pack it keeps or condemns into its own index parts,
        # and an extra index object naming them could outlive their deletion.
        r = self.result
        r.phase = "reading the index and pack contents"
        repo.load_index()
        contents = self._pack_contents()
        # Leases first, then snapshots: a backup whose lease is not in this
        # list either ended before it (its snapshot is listed below) or began
        # after it (it saw the condemned packs as condemned).
        every = self._leases()
        leases = self._other_leases(every)
        if not self.dry_run:
            self._delete_old_locks(every)
        snapshots = repo.snapshots()
        r.phase = "finding what the snapshots use"
        live = live_blobs(repo, snapshots)
        deletable = {
            pack for pack, condemned_at in repo.condemned.items() if _all_after(leases, condemned_at)
        }
        # A pack's stored size (padding included) is what it costs: small
        # padded packs of daily incremental backups get merged by repacking.
        stored = {pid: repo.pack_sizes[pid] for pid in contents if pid not in repo.condemned}
        entries = {pid: pack.entries for pid, pack in contents.items()}
        decided = plan(stored, entries, repo.condemned.keys(), deletable, live, self.repack_below)
        if decided.missing:
            raise IntegrityError(
                f"{len(decided.missing)} blob(s) that snapshots reference are in no pack; "
                "nothing was deleted — run `keep check` to see which files are affected"
            )
        r.snapshots, r.blobs_live = len(snapshots), len(live)
        r.packs_kept, r.packs_repacked = len(decided.keep), len(decided.repack)
        r.packs_condemned = len(decided.condemn) + len(decided.repack)
        r.packs_resurrected = len(decided.resurrected)
        nothing_to_do = not (decided.delete or decided.repack or decided.condemn or decided.resurrected)
        if self.dry_run or nothing_to_do:
            r.packs_deleted, r.packs_waiting = len(decided.delete), len(decided.still_condemned)
            r.bytes_freed = sum(repo.pack_sizes.get(p, 0) for p in decided.delete)
            r.seconds = self.clock() - started
            return r
        r.phase = "deleting and repacking packs"
        r.bytes_to_repack = sum(repo.pack_sizes.get(p, 0) for p in decided.repack)
        self._delete_packs(decided.delete)  # condemned in every current index: nobody dedups against them
        self._repack(decided.repack, live)
        r.phase = "writing the index"
        newly = decided.condemn + decided.repack
        waiting = decided.still_condemned + newly
        # Every listed index object, superseded leftovers included: if only the
        # current ones were named, deleting them would let a leftover they
        # superseded (from a crash before its own deletion) count again.
        superseded = list(repo.listed_index_ids)
        # Kept and condemned packs go into separate parts, so that deleting
        # the condemned ones later rewrites only their (small) part.
        self._save_parts(decided.keep)
        condemned_parts = self._save_parts(waiting)
        # Until this exists, readers see duplicates; it carries the forgotten list on.
        control = repo.save_index([], superseded, waiting, repo.forgotten)
        self._delete_indexes(superseded)
        if newly and not self._other_leases_before(control):
            # Nobody could have seen these packs as live: phase two right away.
            self._delete_packs(newly)
            waiting = decided.still_condemned
            self._save_parts(waiting)
            # Also re-supersede the old indexes, in case deleting one failed.
            repo.save_index([], [control, *condemned_parts, *superseded], waiting, repo.forgotten)
            self._delete_indexes([control, *condemned_parts])
        r.packs_waiting = len(waiting)
        r.seconds = self.clock() - started
        return r

    # Leases ------------------------------------------------------------------
    def _leases(self) -> list[dict[str, object]]:
        return list(self.repo.remote.request_json("GET", Route.LOCKS).get("locks", []))

    def _other_leases(self, every: list[dict[str, object]] | None = None) -> list[dict[str, object]]:
        """The leases but this prune's own (`every`: as listed already)."""
        listed = self._leases() if every is None else every
        return [lk for lk in listed if lk.get("id") != self.lease.lease_id]

    def _delete_old_locks(self, leases: list[dict[str, object]]) -> None:
        """LOCK objects (who held a lease) that no live lease names. Devices
        cannot delete, so each backup leaves one; one younger than the longest
        lease may belong to a lease being taken right now, and stays."""
        named = {str(lk.get("holder")) for lk in leases}
        before = self.lease.created - LOCK_TTL_MAX
        for obj in self.repo.remote.list_objects("lock"):
            if obj.id not in named and obj.created < before:
                self.repo.remote.delete_object("lock", obj.id)
                self.result.locks_deleted += 1

    def _other_leases_before(self, index_id: str) -> bool:
        arrived = next(o.created for o in self.repo.remote.list_objects("index") if o.id == index_id)
        return not _all_after(self._other_leases(), arrived)

    # Packs -------------------------------------------------------------------
    def _pack_contents(self) -> dict[str, IndexedPack]:
        """Every readable pack on the server, as its own TOC states it; the
        index parts this prune writes are made of these."""
        repo = self.repo
        out: dict[str, IndexedPack] = {}
        for pack_id, size in repo.pack_sizes.items():
            try:
                out[pack_id] = repo.pack_contents(pack_id, size)
            except (FormatError, IntegrityError, NotFoundError):
                continue  # damaged or foreign: never deleted here; `keep check` names it
        repo.replace_packs(out)
        return out

    def _delete_packs(self, packs: list[str]) -> None:
        if not packs:
            return
        with ThreadPoolExecutor(DELETE_THREADS, thread_name_prefix="keep-prune") as pool:
            list(pool.map(lambda p: self.repo.remote.delete_object("pack", p), packs))
        self.result.packs_deleted += len(packs)
        self.result.bytes_freed += sum(self.repo.pack_sizes.get(p, 0) for p in packs)

    def _repack(self, packs: list[str], live: set[bytes]) -> None:
        """Copy the live blobs of `packs` into new packs (verified on the way:
        a damaged blob is never copied) and index them."""
        if not packs:
            return
        repo = self.repo
        packer = Packer(repo)
        decompressor = BlobDecompressor()
        copied: set[bytes] = set()
        try:
            for pack_id in packs:
                data = repo.remote.get_object("pack", pack_id)
                self.result.bytes_downloaded += len(data)
                reader = PackReader.open(repo.keys.data, data)
                view = memoryview(data)
                for entry in reader.entries:
                    # Every live blob the pack holds is copied, even if an
                    # index says another pack holds it too: that claim may be
                    # false, and the copy is verified on the way.
                    if entry.blob_id not in live or entry.blob_id in copied:
                        continue
                    sealed = view[entry.offset : entry.offset + entry.length]
                    try:
                        payload, _ = open_blob_payload(
                            reader.cipher, entry, sealed, repo.keys.id, decompressor
                        )
                    except (IntegrityError, FormatError):
                        # This copy is worthless (damaged, or a planted claim):
                        # nothing of value is lost with the pack. Good copies
                        # elsewhere are kept by their own packs' TOCs; if none
                        # exists, `keep check` names the files.
                        self.result.blobs_unreadable += 1
                        continue
                    copied.add(entry.blob_id)
                    repo.drop_location(entry.blob_id)
                    raw = entry.raw_length
                    packer.add(entry.blob_type, entry.blob_id, entry.codec, payload, raw, check_index=False)
            packer.flush()
        except BaseException:
            packer.abort()
            raise
        self.result.bytes_uploaded += packer.stats.bytes_uploaded

    # Indexes -----------------------------------------------------------------
    def _save_parts(self, pack_ids: list[str]) -> list[str]:
        """Index objects for these packs, INDEX_PACKS at a time."""
        packs = [self.repo.packs[p] for p in pack_ids]
        return [self.repo.save_index(packs[i : i + INDEX_PACKS]) for i in range(0, len(packs), INDEX_PACKS)]

    def _delete_indexes(self, ids: list[str]) -> None:
        for object_id in ids:
            self.repo.remote.delete_object("index", object_id)


def _all_after(leases: list[dict[str, object]], condemned_at: int) -> bool:
    """Whether every lease was granted clearly after `condemned_at`."""
    return all(int(str(lk.get("created", 0))) > condemned_at + CONDEMN_MARGIN for lk in leases)
