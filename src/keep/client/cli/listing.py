"""`keep snapshots`, `keep ls`, `keep stats`."""

from __future__ import annotations

import os
import stat

import click

from keep.client.cli.main import CliContext, cli
from keep.client.cli.session import open_repository, pick_snapshot, snapshot_filter_options
from keep.client.device.backup_record import last_backup
from keep.client.engine import explore, snapshot_filter
from keep.client.engine.drill import last as last_drill
from keep.client.engine.explore import walk
from keep.client.text import display_path, human_bytes, local_time, rfc3339
from keep.protocol.errors import NotFoundError
from keep.protocol.tree import NodeType


@cli.command()
@snapshot_filter_options
@click.pass_obj
def snapshots(
    ctx: CliContext, host_filter: tuple[str, ...], path_filter: tuple[str, ...], tag_filter: tuple[str, ...]
) -> None:
    """List snapshots (of every host, or those matching --host/--path/--tag), oldest first."""
    with open_repository(ctx) as (_, repo):
        snaps = snapshot_filter.given(host_filter, path_filter, tag_filter).select(repo.snapshots())
    rows: list[dict[str, object]] = [
        {
            "id": s.id,
            "time": rfc3339(ns=s.snapshot.time_ns),
            "host": s.snapshot.host,
            "paths": [os.fsdecode(p) for p in s.snapshot.paths],
            "tags": list(s.snapshot.tags),
            "summary": s.snapshot.summary,
        }
        for s in snaps
    ]
    human = (
        "\n".join(
            f"{s.id[:12]}  {local_time(s.snapshot.time_ns)}  {s.snapshot.host:<16} "
            + ", ".join(display_path(p) for p in s.snapshot.paths)
            + (f"  [{', '.join(s.snapshot.tags)}]" if s.snapshot.tags else "")
            for s in snaps
        )
        or "no snapshots"
    )
    ctx.emit(human, rows)


@cli.command()
@click.argument("snapshot")
@click.argument("path", required=False)
@snapshot_filter_options
@click.pass_obj
def ls(
    ctx: CliContext,
    snapshot: str,
    path: str | None,
    host_filter: tuple[str, ...],
    path_filter: tuple[str, ...],
    tag_filter: tuple[str, ...],
) -> None:
    """List the files of SNAPSHOT (an id prefix, or 'latest': this device's
    newest, or the newest matching --host/--path/--tag), under PATH."""
    prefix = os.fsencode(path.rstrip("/")) if path else b""
    with open_repository(ctx) as (_, repo):
        repo.load_index()
        info = pick_snapshot(ctx, repo, snapshot, host_filter, path_filter, tag_filter)
        entries = [
            (p, n)
            for p, n in walk(repo, info.snapshot.tree)
            if not prefix or p == prefix or p.startswith(prefix + b"/")
        ]
    if prefix and not entries:
        raise NotFoundError(f"nothing in snapshot {info.id[:12]} is at or under {path}")
    rows = [
        {
            "path": os.fsdecode(p),
            "type": n.type.name.lower(),
            "mode": oct(n.mode),
            "size": n.size,
            "mtime": rfc3339(ns=n.mtime_ns),
        }
        for p, n in entries
    ]
    kinds = {NodeType.DIR: stat.S_IFDIR, NodeType.SYMLINK: stat.S_IFLNK, NodeType.FILE: stat.S_IFREG}
    human = "\n".join(
        f"{stat.filemode(kinds.get(n.type, 0) | n.mode)} {n.size:>12} {local_time(n.mtime_ns)} "
        + display_path(p)
        for p, n in entries
    )
    ctx.emit(human, rows)


@cli.command()
@click.argument("snapshot_refs", nargs=-1, metavar="[SNAPSHOT]...")
@click.option("--mode", type=click.Choice(explore.MODES), help="Sizes of snapshots (restic's modes).")
@snapshot_filter_options
@click.pass_obj
def stats(
    ctx: CliContext,
    snapshot_refs: tuple[str, ...],
    mode: str | None,
    host_filter: tuple[str, ...],
    path_filter: tuple[str, ...],
    tag_filter: tuple[str, ...],
) -> None:
    """Repository usage, the latest snapshot, this device's last backup and
    drill; with --mode or SNAPSHOTs, their sizes: restore-size (default),
    files-by-contents or raw-data."""
    if mode or snapshot_refs:
        _sizes(ctx, snapshot_refs, mode or "restore-size", host_filter, path_filter, tag_filter)
        return
    with open_repository(ctx) as (state, repo):
        usage = repo.remote.usage()
        snaps = repo.snapshots()
    latest = snaps[-1] if snaps else None
    drilled = last_drill(ctx.home)
    last = last_backup(ctx.home)
    data = {
        "account": state.account,
        "server": state.server_url,
        "snapshots": len(snaps),
        "stored_bytes": usage.bytes,
        "objects": usage.objects,
        "quota": usage.quota,
        "latest": None
        if latest is None
        else {
            "id": latest.id,
            "time": rfc3339(ns=latest.snapshot.time_ns),
            "summary": latest.snapshot.summary,
        },
        "last_verified_restore": drilled and {**drilled, "time": rfc3339(drilled["time"])},
        "last_backup": last and {**last, "time": rfc3339(last["time"])},
    }
    human = (
        f"account {state.account} on {state.server_url}\n"
        f"{len(snaps)} snapshots, {human_bytes(usage.bytes)} stored in {usage.objects} objects"
        + (f"\nlatest: {latest.id[:12]} at {local_time(latest.snapshot.time_ns)}" if latest else "")
        + "\nlast verified restore: "
        + (
            "never (run `keep drill`)"
            if drilled is None
            else f"{local_time(int(drilled['time'] * 1e9))}, snapshot {str(drilled['snapshot'])[:12]}, "
            f"{drilled['files']} files: " + ("all matched" if drilled.get("ok") else "MISMATCHES")
        )
        + "\nlast backup: "
        + (
            "never"
            if last is None
            else f"{local_time(int(last['time'] * 1e9))}: "
            + {"ok": "succeeded", "partial": "finished with warnings"}.get(last["result"], "FAILED")
            + (f" ({last['error']})" if last.get("error") else "")
        )
    )
    ctx.emit(human, data)


def _sizes(
    ctx: CliContext,
    refs: tuple[str, ...],
    mode: str,
    hosts: tuple[str, ...],
    paths: tuple[str, ...],
    tags: tuple[str, ...],
) -> None:
    with open_repository(ctx) as (_, repo):
        repo.load_index()
        listed = repo.snapshots()
        if refs:
            chosen = [pick_snapshot(ctx, repo, ref, hosts, paths, tags, listed) for ref in refs]
        else:
            chosen = snapshot_filter.given(hosts, paths, tags).select(listed)
        sized = explore.sizes(repo, chosen, mode)
    what = {
        "restore-size": f"{sized.files:,} files, {human_bytes(sized.bytes)} restored",
        "files-by-contents": f"{sized.files:,} distinct file contents, {human_bytes(sized.bytes)}",
        "raw-data": f"{sized.blobs:,} distinct blobs: {human_bytes(sized.bytes)} of data, "
        f"{human_bytes(sized.stored_bytes)} as stored",
    }[mode]
    ctx.emit(f"{mode} of {sized.snapshots} snapshot(s): {what}", vars(sized))
