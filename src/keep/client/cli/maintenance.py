"""`keep forget` and `keep prune`: retention, then freeing space.

Both delete, so both log in as the owner (password or recovery kit); with a
device credential alone the server refuses (device credentials are
append-only). `forget` holds an exclusive lease while it deletes snapshot
objects, so it never removes the parent of a running backup; `prune` holds a
prune lease, which runs beside backups (docs/engine.md "Prune").
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from keep.client.cli.main import CliContext, cli
from keep.client.cli.progress import Progress, Reading
from keep.client.cli.session import (
    become_owner,
    open_repository,
    owner_options,
    pick_snapshot,
    snapshot_filter_options,
)
from keep.client.engine import snapshot_filter
from keep.client.engine.lease import HeldLock, Lease, held_locks
from keep.client.engine.prune import Pruner, PruneResult
from keep.client.engine.prune import forget as forget_snapshots
from keep.client.engine.prune_plan import REPACK_BELOW
from keep.client.engine.repository import Repository, SnapshotInfo
from keep.client.engine.retention import (
    CLOCK_SKEW_MAX,
    Decision,
    Policy,
    SnapshotFacts,
    decide,
    group_key,
    parse_duration,
)
from keep.client.text import display_path, human_bytes, local_time, rfc3339
from keep.protocol.api import Route, route_path
from keep.protocol.errors import ExitCode
from keep.protocol.keys import OwnerPublicKey

repack_option = click.option(
    "--repack-below",
    type=click.FloatRange(0.0, 1.0),
    default=REPACK_BELOW,
    show_default=True,
    help="Repack packs whose live fraction is below this.",
)


def _facts(snapshots: list[SnapshotInfo], owner: OwnerPublicKey) -> list[SnapshotFacts]:
    return [
        SnapshotFacts(
            s.id,
            s.snapshot.time_ns,
            s.snapshot.host,
            s.snapshot.paths,
            s.snapshot.tags,
            s.arrived,
            vouched=s.snapshot.owner_signed(owner),
        )
        for s in snapshots
    ]


@cli.command()
@click.argument("snapshot_ids", nargs=-1)
@click.option("--keep-last", type=click.IntRange(0), default=0, help="Keep the N newest snapshots.")
@click.option("--keep-hourly", type=click.IntRange(0), default=0, help="Keep the newest of N hours.")
@click.option("--keep-daily", type=click.IntRange(0), default=0, help="Keep the newest of N days.")
@click.option("--keep-weekly", type=click.IntRange(0), default=0, help="Keep the newest of N weeks.")
@click.option("--keep-monthly", type=click.IntRange(0), default=0, help="Keep the newest of N months.")
@click.option("--keep-yearly", type=click.IntRange(0), default=0, help="Keep the newest of N years.")
@click.option("--keep-within", metavar="DURATION", help="Keep snapshots within DURATION (e.g. 30d, 1y6m).")
@click.option("--keep-tag", "keep_tags", multiple=True, help="Keep snapshots with this tag (repeatable).")
@click.option("--dry-run", is_flag=True, help="Only show what would be forgotten.")
@click.option("--prune", "then_prune", is_flag=True, help="Prune right after forgetting.")
@click.option(
    "--allow-suspicious",
    is_flag=True,
    help="Also act on groups holding a snapshot whose time disagrees with its arrival at the server.",
)
@repack_option
@owner_options
@snapshot_filter_options
@click.pass_obj
def forget(
    ctx: CliContext,
    snapshot_ids: tuple[str, ...],
    keep_last: int,
    keep_hourly: int,
    keep_daily: int,
    keep_weekly: int,
    keep_monthly: int,
    keep_yearly: int,
    keep_within: str | None,
    keep_tags: tuple[str, ...],
    dry_run: bool,
    then_prune: bool,
    allow_suspicious: bool,
    repack_below: float,
    password_file: Path | None,
    recovery_kit: Path | None,
    host_filter: tuple[str, ...],
    path_filter: tuple[str, ...],
    tag_filter: tuple[str, ...],
) -> None:
    """Forget the SNAPSHOT_IDS given, or else the snapshots that a retention
    policy does not keep (restic rules, per host and paths), among those
    matching --host/--path/--tag if given. Policy options default to
    [retention] in keep.toml."""
    r = ctx.config.retention
    policy = Policy(
        last=keep_last or r.keep_last,
        hourly=keep_hourly or r.keep_hourly,
        daily=keep_daily or r.keep_daily,
        weekly=keep_weekly or r.keep_weekly,
        monthly=keep_monthly or r.keep_monthly,
        yearly=keep_yearly or r.keep_yearly,
        within_seconds=parse_duration(w) if (w := keep_within or r.keep_within) else 0,
        tags=keep_tags or r.keep_tag,
    )
    with open_repository(ctx) as (state, repo):
        listed = repo.snapshots()
        snapshots = snapshot_filter.given(host_filter, path_filter, tag_filter).select(listed)
        facts = _facts(snapshots, repo.keys.owner)
        if snapshot_ids:
            filters = (host_filter, path_filter, tag_filter)
            named = {pick_snapshot(ctx, repo, ref, *filters, listed=listed).id for ref in snapshot_ids}
            decision = Decision(
                keep=[(s, ["not named"]) for s in facts if s.id not in named],
                remove=[s for s in facts if s.id in named],
            )
        else:
            decision = decide(facts, policy)
        held_back = {group_key(s) for s in decision.suspicious} if not allow_suspicious else set()
        remove = [s for s in decision.remove if group_key(s) not in held_back]
        lines = [
            f"warning: snapshot {s.id[:12]} says {local_time(s.time_ns)} but reached the server at "
            f"{local_time(s.arrived * 10**9)} (more than {CLOCK_SKEW_MAX // 3600} h apart); "
            + (
                "acting anyway (--allow-suspicious)"
                if allow_suspicious
                else "it may be planted, so its group is left alone (--allow-suspicious to act anyway)"
            )
            for s in decision.suspicious
        ]
        lines += [
            f"keep    {s.id[:12]}  {local_time(s.time_ns)}  {s.host}  "
            f"{', '.join(display_path(p) for p in s.paths)}  ({', '.join(why)})"
            for s, why in decision.keep
        ]
        lines += [
            f"{'would forget' if dry_run else 'forget'}  {s.id[:12]}  {local_time(s.time_ns)}  {s.host}  "
            f"{', '.join(display_path(p) for p in s.paths)}"
            for s in remove
        ]
        report: dict[str, Any] = {
            "keep": [{"id": s.id, "reasons": why} for s, why in decision.keep],
            "forget": [s.id for s in remove],
            "suspicious": [
                {"id": s.id, "time": rfc3339(ns=s.time_ns), "arrived": rfc3339(s.arrived)}
                for s in decision.suspicious
            ],
            "held_back_groups": len(held_back),
            "dry_run": dry_run,
        }
        if not dry_run:
            become_owner(state, repo, password_file, recovery_kit)
            forget_snapshots(repo, [s.id for s in remove])
            lines.append(f"{len(remove)} snapshot(s) forgotten, {len(decision.keep)} kept")
            if then_prune:
                result = _prune(ctx, repo, repack_below, dry_run=False)
                lines.append(_prune_text(result))
                report["prune"] = _prune_json(result)
    ctx.emit("\n".join(lines), report)
    if held_back:
        raise SystemExit(int(ExitCode.PARTIAL))


@cli.command()
@click.option("--dry-run", is_flag=True, help="Only show what would be freed.")
@repack_option
@owner_options
@click.pass_obj
def prune(
    ctx: CliContext, dry_run: bool, repack_below: float, password_file: Path | None, recovery_kit: Path | None
) -> None:
    """Delete data no snapshot references; repack mostly-unused packs."""
    with open_repository(ctx) as (state, repo):
        if not dry_run:
            become_owner(state, repo, password_file, recovery_kit)
        result = _prune(ctx, repo, repack_below, dry_run)
    ctx.emit(_prune_text(result), _prune_json(result))


def _prune(ctx: CliContext, repo: Repository, repack_below: float, dry_run: bool) -> PruneResult:
    # --dry-run reads only: a shared lease, which a device may hold
    with Lease(repo, "shared" if dry_run else "prune", "prune --dry-run" if dry_run else "prune") as lease:
        pruner = Pruner(repo, lease, repack_below, dry_run=dry_run)
        r = pruner.result

        def read() -> Reading:
            return Reading(r.bytes_downloaded, r.bytes_to_repack or None, current=r.phase)

        with Progress(ctx.interactive, "prune", read):
            return pruner.run()


def _prune_text(r: PruneResult) -> str:
    waiting = (
        f"; {r.packs_waiting} condemned pack(s) wait for backups that were running to end "
        "(the next prune deletes them)"
        if r.packs_waiting
        else ""
    )
    return (
        f"{r.snapshots} snapshots, {r.blobs_live} live blobs; packs: {r.packs_kept} kept, "
        f"{r.packs_repacked} repacked, {r.packs_condemned} condemned, {r.packs_deleted} deleted"
        + (f", {r.packs_resurrected} needed again" if r.packs_resurrected else "")
        + f"; {human_bytes(r.bytes_freed)} freed, {human_bytes(r.bytes_downloaded)} downloaded, "
        f"{human_bytes(r.bytes_uploaded)} uploaded in {r.seconds:.1f} s{waiting}"
    )


def _prune_json(r: PruneResult) -> dict[str, Any]:
    return dict(vars(r))


@cli.command()
@click.option("--force", is_flag=True, help="Also remove leases whose holder may still be running.")
@owner_options
@click.pass_obj
def unlock(ctx: CliContext, force: bool, password_file: Path | None, recovery_kit: Path | None) -> None:
    """Remove repository leases whose holder is gone (a killed backup): its
    process no longer runs on this host, or it stopped renewing. This
    device's own leases need no password; other devices' need the owner."""
    with open_repository(ctx) as (state, repo):
        held = held_locks(repo)
        now = time.time()
        remove = [h for h in held if force or h.stale(now)]
        if any(h.principal != state.device_id for h in remove):
            become_owner(state, repo, password_file, recovery_kit)
        for h in remove:
            repo.remote.request_json("DELETE", route_path(Route.LOCK, lock_id=h.id), ok=(204, 404))
    kept = [h for h in held if h not in remove]
    lines = [f"removed: {h.describe()} ({h.stale(now) or 'forced'})" for h in remove]
    lines += [
        f"kept: {h.describe()} (renewed {int(h.silent_for(now))} s ago; --force removes it)" for h in kept
    ]
    ctx.emit(
        "\n".join(lines) or "no leases are held",
        {
            "removed": [lock_json(h, now) for h in remove],
            "kept": [lock_json(h, now) for h in kept],
        },
    )


def lock_json(lock: HeldLock, now: float) -> dict[str, Any]:
    r = lock.record
    return {
        "id": lock.id,
        "mode": lock.mode,
        "principal": lock.principal,
        "created": rfc3339(lock.created),
        "expires": rfc3339(lock.expires),
        "holder": None if r is None else {"host": r.host, "user": r.user, "pid": r.pid, "purpose": r.purpose},
        "stale": lock.stale(now),
    }
