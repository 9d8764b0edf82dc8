"""`keep restore SNAPSHOT --target DIR`."""

from __future__ import annotations

import os
import re
from pathlib import Path

import click

from keep.client.cli.main import CliContext, cli
from keep.client.cli.progress import Progress, Reading
from keep.client.cli.session import open_repository, pick_snapshot, snapshot_filter_options
from keep.client.engine import explore
from keep.client.engine.lease import Lease
from keep.client.engine.repository import Repository, SnapshotInfo
from keep.client.engine.restorer import OVERWRITE, Restorer, RestoreStoppedError
from keep.client.text import display_path, human_bytes
from keep.protocol.errors import ExitCode, IntegrityError, KeepError, NotFoundError

NAMES_SHOWN = 20  # files named in a message; the rest are counted (all of them with --json)


@cli.command()
@click.argument("snapshot")
@click.option("--target", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--include", "includes", multiple=True, help="Restore only this path or glob (repeatable).")
@click.option(
    "--exclude", "excludes", multiple=True, help="Leave out entries matching this glob, and what is below."
)
@click.option("--dry-run", is_flag=True, help="Only say what would be restored; touch nothing.")
@click.option(
    "--verify",
    is_flag=True,
    help="Afterwards read every restored file back and compare it with the snapshot.",
)
@click.option(
    "--overwrite",
    type=click.Choice(OVERWRITE),
    default="always",
    show_default=True,
    help="What to do with files TARGET already holds: always replace them, only if their content "
    "differs, only if the snapshot's copy is newer, or never.",
)
@snapshot_filter_options
@click.pass_obj
def restore(
    ctx: CliContext,
    snapshot: str,
    target: Path,
    includes: tuple[str, ...],
    excludes: tuple[str, ...],
    dry_run: bool,
    verify: bool,
    overwrite: str,
    host_filter: tuple[str, ...],
    path_filter: tuple[str, ...],
    tag_filter: tuple[str, ...],
) -> None:
    """Restore SNAPSHOT (an id prefix, or 'latest': this device's newest, or
    the newest matching --host/--path/--tag) into TARGET."""
    with open_repository(ctx) as (_, repo), Lease(repo, purpose="restore"):
        repo.load_index()
        repo.reindex_orphan_packs(save=False)  # packs whose index object was lost are still found
        info = pick_snapshot(ctx, repo, snapshot, host_filter, path_filter, tag_filter)
        chosen = _expand(repo, info, includes)
        if includes and not chosen:
            raise NotFoundError(f"nothing in snapshot {info.id[:12]} matches {', '.join(includes)}")
        restorer = Restorer(
            repo,
            os.fsencode(target),
            chosen,
            overwrite=overwrite,
            excludes=tuple(os.fsencode(e) for e in excludes),
        )
        if dry_run:
            _preview(ctx, restorer, info, target)
            return
        s = restorer.stats

        def read() -> Reading:
            planned = s.files_planned or None  # known once the trees are walked
            return Reading(
                s.bytes_written,
                s.bytes_planned if planned else None,
                s.files_written,
                planned,
                display_path(s.current),
            )

        try:
            with Progress(ctx.interactive, "restore", read):
                stats = restorer.run(info.snapshot.tree)
        except RestoreStoppedError as exc:
            _name_files("not restored", exc.not_restored)
            raise
    if includes and not stats.matched:
        raise NotFoundError(f"nothing in snapshot {info.id[:12]} matches {', '.join(includes)}")
    if verify:
        with Progress(
            ctx.interactive, "verify", lambda: Reading(0, None, current="reading restored files back")
        ):
            mismatches = restorer.verify()
    warnings = [{"path": w.path, "message": w.message} for w in stats.warnings]
    summary = {
        "snapshot": info.id,
        "files": stats.files,
        "files_skipped": stats.files_skipped,
        "files_kept": stats.files_kept,
        "files_overwritten": stats.files_overwritten,
        "files_failed": stats.files_failed,
        "dirs": stats.dirs,
        "bytes_written": stats.bytes_written,
        "bytes_fetched": stats.bytes_fetched,
        "warnings": warnings,
    }
    lines = [f"warning: {w['path']}: {w['message']}" for w in warnings]
    if verify:
        summary["verified"] = stats.files + stats.files_skipped - len(mismatches)
        summary["mismatches"] = [{"path": m.path, "problem": m.message} for m in mismatches]
        lines += [f"MISMATCH: {m.path}: {m.message}" for m in mismatches]
    lines.append(
        f"restored snapshot {info.id[:12]} to {target}: {stats.files} files "
        f"({stats.files_skipped} already up to date, {stats.files_overwritten} replaced existing ones"
        + (
            f"; {stats.files_kept} existing left as they were (--overwrite {overwrite})"
            if stats.files_kept
            else ""
        )
        + f"), {stats.dirs} dirs, "
        f"{human_bytes(stats.bytes_written)} written"
        + ("; every file read back and verified" if verify and not mismatches else "")
    )
    ctx.emit("\n".join(lines), summary)
    if verify and mismatches:
        names = _names([m.path for m in mismatches])
        raise IntegrityError(f"{len(mismatches)} restored file(s) differ from the snapshot ({names})")
    if stats.files_failed_integrity:
        raise IntegrityError(
            f"{stats.files_failed} file(s) were not restored because their data failed verification "
            "(damaged or tampered objects on the server); every other file was restored"
        )
    if stats.files_failed:
        raise KeepError(
            f"{stats.files_failed} file(s) were not restored (listed above; what the target held "
            "under those names is unchanged); every other file was restored"
        )
    if warnings:
        raise SystemExit(int(ExitCode.PARTIAL))


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown + (f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else "")


def _name_files(what: str, paths: list[str]) -> None:
    for path in paths[:NAMES_SHOWN]:
        click.echo(f"{what}: {path}", err=True)
    if len(paths) > NAMES_SHOWN:
        click.echo(f"{what}: ... and {len(paths) - NAMES_SHOWN} more", err=True)


GLOB = re.compile(r"[*?\[]")


def _expand(repo: Repository, info: SnapshotInfo, includes: tuple[str, ...]) -> tuple[bytes, ...]:
    """--include values as paths: a pattern (*, ?, [...], ** — git's rules,
    patterns.py) becomes every path of the snapshot it matches."""
    plain = [os.fsencode(i) for i in includes if not GLOB.search(i)]
    globs = [explore.path_matcher(i) for i in includes if GLOB.search(i)]
    if globs:  # one walk of the snapshot for all of them
        found = explore.find(repo, [info], lambda path, node: any(g(path, node) for g in globs))
        plain += [path for hit in found for path, _ in hit.matches]
    return tuple(plain)


def _preview(ctx: CliContext, restorer: Restorer, info: SnapshotInfo, target: Path) -> None:
    p = restorer.preview(info.snapshot.tree)
    snapshot_id = info.id
    ctx.emit(
        f"would restore snapshot {snapshot_id[:12]} to {target}: {p.files} files "
        f"({human_bytes(p.bytes)}), {p.dirs} dirs; of what {target} holds, {p.replaced} would be "
        f"replaced and {p.kept} left as they are (--overwrite {restorer.overwrite}); nothing was written",
        {"dry_run": True, "snapshot": snapshot_id, **vars(p)},
    )
