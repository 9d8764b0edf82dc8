"""Which snapshots a command means: `--host`, `--path` and `--tag` filters,
and what `latest` means on a device.

`latest` on its own is the newest snapshot *this device* made of its
configured sources (same host name, same set of paths), so a one-off backup
of some other folder, or another device's backup, never becomes what
`restore latest` restores. When there is none — a new machine after the old
one was lost has another host name and no sources yet — it is the newest
snapshot of any host or paths, and the command says so. Explicit filters
replace the device's default.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from keep.client.engine.repository import SnapshotInfo, snapshot_by_id
from keep.protocol.errors import NotFoundError
from keep.protocol.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class SnapshotFilter:
    hosts: tuple[str, ...] = ()  # any of these hosts
    paths: tuple[bytes, ...] = ()  # snapshots holding all of these (absolute) paths
    tags: tuple[str, ...] = ()  # snapshots carrying all of these tags
    exact_paths: bool = False  # paths must be the snapshot's whole set (a device's own sources)

    def __bool__(self) -> bool:
        return bool(self.hosts or self.paths or self.tags)

    def matches(self, snapshot: Snapshot) -> bool:
        if self.hosts and snapshot.host not in self.hosts:
            return False
        if self.exact_paths and set(self.paths) != set(snapshot.paths):
            return False
        return all(p in snapshot.paths for p in self.paths) and all(t in snapshot.tags for t in self.tags)

    def select(self, snapshots: Iterable[SnapshotInfo]) -> list[SnapshotInfo]:
        return [s for s in snapshots if self.matches(s.snapshot)]

    def describe(self) -> str:
        parts = [f"host {' or '.join(self.hosts)}"] if self.hosts else []
        parts += [f"path {os.fsdecode(p)}" for p in self.paths]
        parts += [f"tag {t}" for t in self.tags]
        return ", ".join(parts) or "any snapshot"


def given(hosts: Sequence[str], paths: Sequence[str], tags: Sequence[str]) -> SnapshotFilter:
    """The filter of a command's --host / --path / --tag options."""
    return SnapshotFilter(tuple(hosts), tuple(os.fsencode(os.path.abspath(p)) for p in paths), tuple(tags))


def device_default(host: str, sources: Sequence[str]) -> SnapshotFilter:
    """This device's own backups: its host name and, if set, exactly its sources."""
    paths = tuple(os.fsencode(os.path.abspath(s)) for s in sources)
    return SnapshotFilter((host,), paths, exact_paths=bool(paths))


def parent(
    snapshots: Sequence[SnapshotInfo], host: str, sources: Sequence[bytes]
) -> tuple[str, Snapshot] | None:
    """The snapshot a backup of `sources` on `host` compares with to skip
    unchanged files: the newest of the same host and the same set of paths."""
    own = device_default(host, [os.fsdecode(s) for s in sources]).select(snapshots)
    return (own[-1].id, own[-1].snapshot) if own else None


def resolve(
    ref: str, snapshots: Sequence[SnapshotInfo], chosen: SnapshotFilter, default: SnapshotFilter
) -> tuple[SnapshotInfo, str | None]:
    """The snapshot `ref` (an id prefix, or `latest`) names among `snapshots`,
    and a note for the owner when `latest` fell back to any snapshot."""
    if not snapshots or ref != "latest":
        return snapshot_by_id(ref, list(snapshots)), None
    if chosen:
        selected = chosen.select(snapshots)
        if not selected:
            raise NotFoundError(f"no snapshot matches {chosen.describe()}")
        return selected[-1], None
    own = default.select(snapshots)
    if own:
        return own[-1], None
    newest = snapshots[-1]
    return newest, (
        f"note: no snapshot of this device ({default.describe()}); latest is the newest of any: "
        f"{newest.id[:12]} from host {newest.snapshot.host}"
    )
