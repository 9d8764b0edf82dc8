"""`keep backup`: back up paths (default: the configured sources)."""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import asdict
from pathlib import Path

import click

from keep.client.cli.main import CliContext, cli
from keep.client.cli.progress import Progress, Reading
from keep.client.cli.session import UsageError, open_repository
from keep.client.device.backup_record import clear_running, record_last_backup, record_running
from keep.client.engine import snapshot_filter
from keep.client.engine.archiver import Archiver, BackupOptions, BackupPreview
from keep.client.engine.lease import Lease
from keep.client.engine.repository import Repository
from keep.client.text import display_path, human_bytes
from keep.protocol.compression import LEVEL_MAX, LEVEL_MIN
from keep.protocol.errors import ExitCode, KeepError


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--exclude", "excludes", multiple=True, help="Glob; without '/' it matches names, else paths.")
@click.option("--iexclude", "iexcludes", multiple=True, help="Like --exclude, regardless of case.")
@click.option(
    "--exclude-if-present",
    "markers",
    multiple=True,
    metavar="NAME",
    help="Skip the contents of directories holding a file NAME (the file is kept).",
)
@click.option("--exclude-larger-than", "size_limit", metavar="SIZE", help="Leave out files larger (e.g. 2G).")
@click.option(
    "--files-from",
    "files_from",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    help="Read paths to back up from this file, one per line (# comments).",
)
@click.option("-0", "--null", "null", is_flag=True, help="--files-from files are NUL-separated, verbatim.")
@click.option("--verbose", "-v", is_flag=True, help="One line per new or changed file.")
@click.option("--exclude-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), multiple=True)
@click.option("--exclude-caches", is_flag=True, help="Skip contents of dirs with a CACHEDIR.TAG.")
@click.option("--one-file-system", is_flag=True, help="Do not cross file-system boundaries.")
@click.option("--tag", "tags", multiple=True)
@click.option(
    "--compression",
    type=click.IntRange(LEVEL_MIN, LEVEL_MAX),
    default=None,
    help="zstd level of file data (default: [backup] compression, else 1).",
)
@click.option("--host", default=None, help="Host name recorded in the snapshot.")
@click.option("--dry-run", is_flag=True, help="Only say what would be read and what skipped; store nothing.")
@click.pass_obj
def backup(
    ctx: CliContext,
    paths: tuple[Path, ...],
    excludes: tuple[str, ...],
    iexcludes: tuple[str, ...],
    markers: tuple[str, ...],
    size_limit: str | None,
    files_from: tuple[Path, ...],
    null: bool,
    verbose: bool,
    exclude_file: tuple[Path, ...],
    exclude_caches: bool,
    one_file_system: bool,
    tags: tuple[str, ...],
    compression: int | None,
    host: str | None,
    dry_run: bool,
) -> None:
    """Back up PATHS. Exits 3 when some files could not be read."""
    config = ctx.config.backup
    listed = [p for f in files_from for p in _listed_paths(f, null)]
    sources = [os.fsencode(p) for p in paths] + listed or [os.fsencode(s) for s in config.sources]
    if not sources:
        # A failure like any other: the timer's OnFailure, the admin page and
        # `keep stats` all show it, instead of a device that quietly backs up nothing.
        error = UsageError(f"nothing to back up: give paths or set [backup] sources in {ctx.config_file}")
        record_last_backup(ctx.home, {"time": time.time(), "result": "failed", "error": str(error)})
        raise error
    patterns = list(config.excludes) + list(excludes)
    for f in exclude_file:
        patterns += [ln.strip() for ln in f.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    options = BackupOptions(
        excludes=tuple(patterns),
        iexcludes=iexcludes,
        exclude_if_present=markers,
        exclude_larger_than=parse_size(size_limit) if size_limit else None,
        exclude_caches=exclude_caches or config.exclude_caches,
        one_file_system=one_file_system or config.one_file_system,
        tags=tags,
        host=host or socket.gethostname(),
        compression=config.compression if compression is None else compression,
    )
    if dry_run:
        _preview(ctx, options, sources, verbose)
        return
    started = time.time()
    try:
        with open_repository(ctx) as (_, repo), Lease(repo) as lease:
            parent = snapshot_filter.parent(repo.snapshots(), options.host, sources)
            on_file = _print_file if verbose and not ctx.json_output else None
            archiver = Archiver(repo, options, before_snapshot=lease.confirm, on_file=on_file)
            try:
                with _progress(ctx, archiver, sources, started):
                    result = archiver.run(sources, parent)
            finally:
                clear_running(ctx.home)
            stored = _stored_bytes(repo)
    except KeepError as exc:
        record_last_backup(ctx.home, {"time": started, "result": "failed", "error": str(exc)})
        raise
    s = result.stats
    summary = {
        "snapshot": result.snapshot_id,
        "files_new": s.files_new,
        "files_changed": s.files_changed,
        "files_unchanged": s.files_unchanged,
        "dirs": s.dirs,
        "bytes_total": s.bytes_total,
        "bytes_read": s.bytes_read,
        "bytes_added": result.bytes_added,
        "packs": result.packs,
        "seconds": round(result.seconds, 3),
        "warnings": [{"path": w.path, "message": w.message} for w in result.warnings],
    }
    human = "\n".join(
        [f"warning: {w.path}: {w.message}" for w in result.warnings]
        + [
            f"snapshot {result.snapshot_id[:12]} saved",
            f"files: {s.files_new} new, {s.files_changed} changed, {s.files_unchanged} unchanged;"
            f" {s.dirs} dirs",
            f"{human_bytes(s.bytes_total)} in snapshot, {human_bytes(s.bytes_read)} read, "
            f"{human_bytes(result.bytes_added)} added in {result.packs} packs, {result.seconds:.1f} s",
        ]
    )
    record_last_backup(
        ctx.home,
        {
            "time": started,
            "result": "partial" if result.warnings else "ok",
            **summary,
            "stored_bytes": stored,
            "warnings": [{"path": w.path, "message": w.message} for w in result.warnings[:50]],
        },
    )
    ctx.emit(human, summary)
    if result.warnings:
        raise SystemExit(int(ExitCode.PARTIAL))


def _stored_bytes(repo: Repository) -> int | None:
    """What the account stores now, for the device's backup history; a
    server that cannot say does not fail the backup that just succeeded."""
    try:
        return repo.remote.usage().bytes
    except KeepError:
        return None


def _progress(ctx: CliContext, archiver: Archiver, sources: list[bytes], started: float) -> Progress:
    """Files and bytes done of the total (counted by a scan beside the
    backup, as restic does), rate, ETA and the file being read."""
    totals = BackupPreview()  # a scan beside the backup: no parent, so every file counts
    if ctx.interactive:
        threading.Thread(target=archiver.scan, args=(sources, totals), name="keep-scan", daemon=True).start()

    def read() -> Reading:
        s = archiver.stats
        known = totals.complete
        return Reading(
            bytes_done=s.bytes_done,
            bytes_total=max(totals.bytes, s.bytes_done) if known else None,
            files_done=s.files_new + s.files_changed + s.files_unchanged,
            files_total=totals.files if known else None,
            current=display_path(s.current),
        )

    def report(r: Reading) -> None:  # for the admin page, terminal or not
        record_running(ctx.home, {"started": started, **asdict(r)})

    return Progress(ctx.interactive, "backup", read, report)


def _print_file(kind: str, path: bytes, size: int) -> None:
    click.echo(f"{kind:<8} {display_path(path)} ({human_bytes(size)})")


def _listed_paths(listing: Path, null: bool) -> list[bytes]:
    """--files-from: one path per line (blank lines and # comments skipped,
    surrounding blanks dropped), or with -0 NUL-separated and taken verbatim."""
    raw = listing.read_bytes()
    if null:
        return [p for p in raw.split(b"\0") if p]
    lines = (line.strip() for line in raw.splitlines())
    return [line for line in lines if line and not line.startswith(b"#")]


_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """2G, 500M, 1048576 (binary units, as restic)."""
    number, unit = text.strip().upper().rstrip("IB") or "0", ""
    if number[-1:] in _UNITS:
        number, unit = number[:-1], number[-1]
    try:
        return int(float(number) * _UNITS[unit])
    except (ValueError, KeyError):
        raise UsageError(f"{text!r} is not a size (like 500M or 2G)") from None


def _preview(ctx: CliContext, options: BackupOptions, sources: list[bytes], verbose: bool) -> None:
    """--dry-run: the same walk and the same rules, nothing read or stored."""
    with open_repository(ctx) as (_, repo):
        parent = snapshot_filter.parent(repo.snapshots(), options.host, sources)
        on_file = _print_file if verbose and not ctx.json_output else None
        p = Archiver(repo, options, on_file=on_file).preview(sources, parent)
    ctx.emit(
        f"would read {p.files_new} new files ({human_bytes(p.bytes_new)}) and {p.files_changed} changed "
        f"({human_bytes(p.bytes_changed)}), and skip {p.files_unchanged} unchanged "
        f"({human_bytes(p.bytes_unchanged)}); at most {human_bytes(p.bytes_new + p.bytes_changed)} "
        "would be added (less after deduplication and compression); nothing was stored",
        {"dry_run": True, "parent": parent[0] if parent else None, **asdict(p)},
    )
