"""`keep find`, `keep diff`, `keep dump`: look into history without restoring."""

from __future__ import annotations

import datetime
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import click

from keep.client.cli.main import CliContext, cli
from keep.client.cli.session import UsageError, open_repository, pick_snapshot, snapshot_filter_options
from keep.client.engine import explore, snapshot_filter
from keep.client.engine.dump import dump_file, dump_tree
from keep.client.engine.lease import Lease
from keep.client.text import display_path, human_bytes, local_time, rfc3339
from keep.protocol.errors import NotFoundError
from keep.protocol.tree import Node, NodeType

KINDS = {NodeType.DIR: stat.S_IFDIR, NodeType.SYMLINK: stat.S_IFLNK, NodeType.FILE: stat.S_IFREG}


def _moment(text: str | None, option: str) -> int | None:
    """A --newest/--oldest value (YYYY-MM-DD, or RFC 3339) as epoch ns."""
    if text is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a date (YYYY-MM-DD) or time (RFC 3339)") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return int(moment.timestamp() * 1e9)


def _entry(path: bytes, node: Node) -> dict[str, Any]:
    return {
        "path": os.fsdecode(path),
        "type": node.type.name.lower(),
        "size": node.size,
        "mtime": rfc3339(ns=node.mtime_ns),
    }


@cli.command()
@click.argument("pattern")
@click.option("--snapshot", "snapshot_refs", multiple=True, help="Only this snapshot (repeatable).")
@click.option("--ignore-case", "-i", is_flag=True, help="Match regardless of case.")
@click.option("--newest", help="Only entries modified at or before this time (YYYY-MM-DD or RFC 3339).")
@click.option("--oldest", help="Only entries modified at or after this time.")
@snapshot_filter_options
@click.pass_obj
def find(
    ctx: CliContext,
    pattern: str,
    snapshot_refs: tuple[str, ...],
    ignore_case: bool,
    newest: str | None,
    oldest: str | None,
    host_filter: tuple[str, ...],
    path_filter: tuple[str, ...],
    tag_filter: tuple[str, ...],
) -> None:
    """Which snapshots hold entries matching PATTERN (a glob on names; with a
    "/", on whole paths), with each hit's size and time. Exit 1 if none."""
    upto, since = _moment(newest, "--newest"), _moment(oldest, "--oldest")
    by_name = explore.name_matcher(pattern, ignore_case)

    def match(path: bytes, node: Node) -> bool:
        in_time = (upto is None or node.mtime_ns <= upto) and (since is None or node.mtime_ns >= since)
        return in_time and by_name(path, node)

    with open_repository(ctx) as (_, repo):
        listed = repo.snapshots()
        snaps = snapshot_filter.given(host_filter, path_filter, tag_filter).select(listed)
        if snapshot_refs:
            named = {pick_snapshot(ctx, repo, ref, listed=listed).id for ref in snapshot_refs}
            snaps = [s for s in listed if s.id in named]
        found = list(explore.find(repo, snaps, match))
    if not found:
        raise NotFoundError(f"nothing matches {pattern!r} in {len(snaps)} snapshot(s)")
    rows = [
        {
            "snapshot": f.snapshot.id,
            "time": rfc3339(ns=f.snapshot.snapshot.time_ns),
            "host": f.snapshot.snapshot.host,
            "matches": [_entry(p, n) for p, n in f.matches],
        }
        for f in found
    ]
    lines = []
    for f in found:
        s = f.snapshot
        lines.append(
            f"snapshot {s.id[:12]} ({local_time(s.snapshot.time_ns)}, {s.snapshot.host}): "
            f"{len(f.matches)} match(es)"
        )
        lines += [
            f"  {stat.filemode(KINDS.get(n.type, 0) | n.mode)} {n.size:>12} {local_time(n.mtime_ns)} "
            + display_path(p)
            for p, n in f.matches
        ]
    ctx.emit("\n".join(lines), rows)


NAMES = {"+": "added", "-": "removed", "M": "content", "U": "metadata", "T": "type"}


@cli.command()
@click.argument("first")
@click.argument("second")
@click.argument("path", required=False)
@click.option("--metadata", is_flag=True, help="Also list entries whose metadata alone changed.")
@click.pass_obj
def diff(ctx: CliContext, first: str, second: str, path: str | None, metadata: bool) -> None:
    """What changed from snapshot FIRST to SECOND (below PATH if given):
    + added, - removed, M content changed, T type changed, U metadata only
    (with --metadata), and the bytes of data added and removed."""
    with open_repository(ctx) as (_, repo):
        repo.load_index()
        listed = repo.snapshots()
        a, b = (pick_snapshot(ctx, repo, ref, listed=listed) for ref in (first, second))
        where = os.fsencode(path) if path else b""
        if where and all(explore.node_at(repo, s.snapshot.tree, where) is None for s in (a, b)):
            raise NotFoundError(f"neither snapshot holds {path}")
        result = explore.diff(repo, a.snapshot.tree, b.snapshot.tree, where)
    shown = [c for c in result.changes if metadata or c[0] != explore.METADATA]
    counts = {name: sum(1 for c in result.changes if c[0] == kind) for kind, name in NAMES.items()}
    summary = {
        "first": a.id,
        "second": b.id,
        "changes": [{"kind": NAMES[k], "path": os.fsdecode(p)} for k, p, _ in shown],
        "counts": counts,
        "bytes_added": result.bytes_added,
        "bytes_removed": result.bytes_removed,
    }
    lines = [f"{kind}    {display_path(p)}" for kind, p, _ in shown]
    lines.append(
        f"comparing {a.id[:12]} to {b.id[:12]}: {counts['added']} added, {counts['removed']} removed, "
        f"{counts['content']} changed, {counts['type']} changed type, {counts['metadata']} metadata only; "
        f"data added {human_bytes(result.bytes_added)}, removed {human_bytes(result.bytes_removed)}"
    )
    ctx.emit("\n".join(lines), summary)


@cli.command()
@click.argument("snapshot")
@click.argument("path")
@click.option("--archive", type=click.Choice(["tar", "zip"]), default="tar", show_default=True)
@click.option(
    "--target", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout."
)
@click.pass_obj
def dump(ctx: CliContext, snapshot: str, path: str, archive: str, target: Path | None) -> None:
    """PATH of SNAPSHOT to stdout: a file's content, or a directory as a tar
    (or zip) stream with its metadata. Every blob is verified first; memory
    stays bounded whatever the size."""
    where = os.fsencode(path)
    with open_repository(ctx) as (_, repo), Lease(repo, purpose="dump"):
        repo.load_index()
        info = pick_snapshot(ctx, repo, snapshot)
        node = explore.node_at(repo, info.snapshot.tree, where)
        if node is None:
            raise NotFoundError(f"snapshot {info.id[:12]} holds nothing at {path}")
        if node.type not in (NodeType.FILE, NodeType.DIR):
            raise UsageError(f"{path} is a {node.type.name.lower()}: dump a file or a directory")
        if target is None and node.type is NodeType.DIR and sys.stdout.isatty():
            raise UsageError(
                f"refusing to write a {archive} archive to a terminal: redirect it or use --target"
            )
        with _output(target) as out:
            if node.type is NodeType.FILE:
                dump_file(repo, node, out)
            else:
                dump_tree(repo, info.snapshot.tree, where, out, archive)


@contextmanager
def _output(target: Path | None) -> Iterator[BinaryIO]:
    """stdout (binary), or a new file that is removed if the dump fails."""
    if target is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    try:
        file = target.open("xb")  # never over an existing file
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror}") from None
    try:
        with file:
            yield file
    except BaseException:
        target.unlink(missing_ok=True)  # ours, half written
        raise
