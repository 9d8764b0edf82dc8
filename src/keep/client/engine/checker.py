"""`keep check`: is every snapshot restorable, and if not, what is lost?

Structure (always): every index object decodes; every pack an index names
exists and is large enough for its entries; every snapshot decodes; every
tree of every snapshot decodes; every blob a file or directory needs is in
an index and its pack exists. Data (`--read-data`, or a subset of packs):
each pack is downloaded, must hash to its name, its TOC must match what the
index says, and every blob must authenticate and hash to its id.

Every problem is reported with the snapshots and files it affects: a damaged
pack becomes a set of bad blobs, and one walk over the trees (each tree
visited once, its findings reused by every snapshot that shares it) names the
files that need them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from keep.client.engine.repository import Repository, SnapshotInfo
from keep.protocol.compression import BlobDecompressor
from keep.protocol.errors import FormatError, IntegrityError, KeepError, NotFoundError
from keep.protocol.index import Index
from keep.protocol.pack import FOOTER_SEALED_SIZE, PackReader
from keep.protocol.snapshot import Snapshot
from keep.protocol.tree import NodeType, Tree

AFFECTED_MAX = 1000  # affected files listed per check; the count is always exact


@dataclass
class Affected:
    snapshot: str
    path: str
    problem: str


@dataclass
class CheckResult:
    snapshots: int = 0
    trees: int = 0
    packs: int = 0
    packs_read: int = 0
    bytes_read: int = 0
    packs_to_read: int = 0  # chosen by --read-data / --read-data-subset (progress)
    bytes_to_read: int = 0
    errors: list[str] = field(default_factory=list)  # object-level problems
    affected: list[Affected] = field(default_factory=list)
    affected_count: int = 0
    notes: list[str] = field(default_factory=list)  # harmless findings

    @property
    def ok(self) -> bool:
        return not self.errors and not self.affected_count


def parse_subset(text: str) -> Callable[[Sequence[str]], list[str]]:
    """`--read-data-subset`: `N%` (a random N percent of packs) or `n/t`
    (the n-th of t fixed slices, so t runs cover every pack once)."""
    text = text.strip()
    try:
        if text.endswith("%"):
            percent = float(text[:-1])
            if not 0 < percent <= 100:
                raise ValueError
            rng = secrets.SystemRandom()
            return lambda packs: sorted(rng.sample(list(packs), max(1, round(len(packs) * percent / 100))))
        n, t = (int(x) for x in text.split("/"))
        if not 1 <= n <= t:
            raise ValueError
        return lambda packs: [p for p in sorted(packs) if int(p[:8], 16) % t == n - 1]
    except ValueError:
        raise CheckUsageError(f"cannot read the subset {text!r} (use e.g. 10% or 2/5)") from None


class CheckUsageError(KeepError):
    """Raised for a malformed --read-data-subset."""


class Checker:
    def __init__(
        self,
        repo: Repository,
        select_packs: Callable[[Sequence[str]], list[str]] | None = None,
        progress: Callable[[CheckResult], None] | None = None,
    ) -> None:
        self.repo = repo
        self.select_packs = select_packs  # None: structure only
        self.progress = progress
        self.result = CheckResult()
        self._bad_blobs: dict[bytes, str] = {}  # blob id -> what is wrong with it
        self._tree_findings: dict[bytes, list[tuple[bytes, str]]] = {}

    def run(self) -> CheckResult:
        self._check_indexes()
        self._check_packs()
        snapshots = self._load_snapshots()
        if self.select_packs is not None:
            self._read_packs(self.select_packs(sorted(self.repo.packs)))
        for info in snapshots:
            findings = self._walk(info.snapshot.tree)
            self.result.affected_count += len(findings)
            for path, problem in findings[: max(0, AFFECTED_MAX - len(self.result.affected))]:
                self.result.affected.append(Affected(info.id, os.fsdecode(path) or "/", problem))
        return self.result

    # Structure -----------------------------------------------------------------
    def _check_indexes(self) -> None:
        """Load the index; an index object that does not decode is reported
        and left out (its packs then show up as unindexed)."""
        repo = self.repo
        damaged = set()
        for info in repo.remote.list_objects("index"):
            try:
                Index.open(repo.keys.data, repo.remote.get_object("index", info.id))
            except (FormatError, IntegrityError) as exc:
                self.result.errors.append(f"index {info.id[:12]} is damaged ({exc}); its packs are unindexed")
                damaged.add(info.id)
        repo.load_index(skip=damaged)

    def _check_packs(self) -> None:
        repo = self.repo
        self.result.packs = len(repo.packs)
        for pack_id, pack in repo.packs.items():
            size = repo.pack_sizes.get(pack_id)
            if size is None:
                if pack_id not in repo.condemned:  # condemned packs may be gone already
                    self._damage(pack_id, "its pack is missing from the server")
                continue
            end = max((e.offset + e.length for e in pack.entries), default=0)
            if end + FOOTER_SEALED_SIZE > size:
                self._damage(pack_id, "its pack is shorter than the index says")
        if repo.unsigned_control:
            self.result.notes.append(
                f"{len(repo.unsigned_control)} index object(s) claim to supersede, condemn or forget "
                "without the owner's signature and were ignored: a device credential may be in the "
                "wrong hands (revoke it with `keep device revoke`; `keep prune` removes such objects)"
            )
        orphans = [p for p in repo.pack_sizes if p not in repo.packs and p not in repo.condemned]
        if orphans:
            self.result.notes.append(
                f"{len(orphans)} pack(s) are in no index (left by an interrupted backup); "
                "the next backup indexes them, prune removes them if unused"
            )

    def _damage(self, pack_id: str, why: str) -> None:
        self.result.errors.append(f"pack {pack_id[:12]}: {why}")
        for entry in self.repo.packs[pack_id].entries:
            loc = self.repo.locate(entry.blob_id)
            if loc is not None and loc.pack_id == pack_id:
                self._bad_blobs[entry.blob_id] = why

    def _load_snapshots(self) -> list[SnapshotInfo]:
        repo = self.repo
        out = []
        listed = repo.remote.list_objects("snapshot")
        for snapshot_id in repo.unexplained_missing({info.id for info in listed}):
            self.result.errors.append(
                f"snapshot {snapshot_id[:12]}, which this machine wrote or saw, is not listed by the server "
                "and no owner-signed `keep forget` removed it (hidden, or an older state served: rollback)"
            )
        for info in listed:
            try:
                snapshot = Snapshot.open(repo.keys.data, repo.remote.get_object("snapshot", info.id))
            except (FormatError, IntegrityError, NotFoundError) as exc:
                self.result.errors.append(f"snapshot {info.id[:12]} is damaged: {exc}")
                continue
            out.append(SnapshotInfo(info.id, snapshot, info.created))
        self.result.snapshots = len(out)
        return sorted(out, key=lambda s: (s.snapshot.time_ns, s.id))

    def _walk(self, tree_id: bytes) -> list[tuple[bytes, str]]:
        """(path below this tree, problem) for everything under `tree_id`
        that cannot be restored; computed once per tree."""
        known = self._tree_findings.get(tree_id)
        if known is not None:
            return known
        findings: list[tuple[bytes, str]] = []
        self._tree_findings[tree_id] = findings  # a cycle would end here, not recurse
        self.result.trees += 1
        try:
            if tree_id in self._bad_blobs:
                raise IntegrityError(self._bad_blobs[tree_id])
            tree = Tree.from_bytes(self.repo.read_tree_bytes(tree_id))
        except KeepError as exc:
            findings.append((b"", f"directory listing unreadable: {exc}"))
            return findings
        for node in tree.nodes:
            if node.type is NodeType.DIR and node.subtree is not None:
                findings += [(b"/" + node.name + sub, problem) for sub, problem in self._walk(node.subtree)]
            elif node.type is NodeType.FILE:
                problem = self._file_problem(node.content)
                if problem:
                    findings.append((b"/" + node.name, problem))
        if self.progress is not None:
            self.progress(self.result)
        return findings

    def _file_problem(self, content: Sequence[bytes]) -> str:
        for blob in content:
            why = self._bad_blobs.get(blob)
            if why:
                return why
            if self.repo.locate(blob) is None:
                return f"blob {blob.hex()[:12]} is in no index"
        return ""

    # Data ----------------------------------------------------------------------
    def _read_packs(self, packs: list[str]) -> None:
        repo = self.repo
        decompressor = BlobDecompressor()
        self.result.packs_to_read = len(packs)
        self.result.bytes_to_read = sum(repo.pack_sizes.get(p, 0) for p in packs)
        for pack_id in packs:
            if pack_id not in repo.pack_sizes:
                continue  # reported as missing already
            try:
                data = repo.remote.get_object("pack", pack_id)
                reader = PackReader.open(repo.keys.data, data)
            except (FormatError, IntegrityError) as exc:
                self._damage(pack_id, f"its pack is damaged ({exc})")
                continue
            self.result.packs_read += 1
            self.result.bytes_read += len(data)
            indexed = {e.blob_id: e for e in repo.packs[pack_id].entries}
            if {e.blob_id: e for e in reader.entries} != indexed:
                self.result.errors.append(
                    f"pack {pack_id[:12]}: its table of contents differs from the index"
                )
            for entry in reader.entries:
                try:
                    reader.blob(entry, data, repo.keys.id, decompressor)
                except (FormatError, IntegrityError) as exc:
                    why = f"blob {entry.blob_id.hex()[:12]} in pack {pack_id[:12]} is damaged ({exc})"
                    self.result.errors.append(why)
                    self._bad_blobs[entry.blob_id] = why
            if self.progress is not None:
                self.progress(self.result)
