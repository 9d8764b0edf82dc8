"""`keep restore SNAPSHOT --target DIR`."""

from __future__ import annotations

import os
from pathlib import Path

import click
from keep.client.cli.main import CliContext, cli
from keep.client.cli.progress import ProgressLine
from keep.client.cli.session import open_repository
from keep.client.cli.text import human_bytes
from keep.client.lease import Lease
from keep.client.restorer import Restorer, RestoreStats
from keep.protocol.errors import ExitCode, IntegrityError


@cli.command()
@click.argument("snapshot")
@click.option("--target", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--include", "includes", multiple=True, help="Restore only this path (repeatable).")
@click.pass_obj
def restore(ctx: CliContext, snapshot: str, target: Path, includes: tuple[str, ...]) -> None:
    """Restore SNAPSHOT (an id prefix or 'latest') into TARGET."""
    line = ProgressLine(ctx.interactive)

    def progress(stats: RestoreStats) -> None:
        line.show(f"{human_bytes(stats.bytes_written)} restored, {line.rate(stats.bytes_written)}")

    with open_repository(ctx) as (_, repo), Lease(repo.remote):
        repo.load_index()
        repo.reindex_orphan_packs(save=False)  # packs whose index object was lost are still found
        info = repo.find_snapshot(snapshot)
        restorer = Restorer(repo, os.fsencode(target), tuple(os.fsencode(i) for i in includes))
        stats = restorer.run(info.snapshot.tree, progress)
    line.done()
    warnings = [{"path": w.path, "message": w.message} for w in stats.warnings]
    ctx.emit(
        "\n".join(
            [f"warning: {w['path']}: {w['message']}" for w in warnings]
            + [
                f"restored snapshot {info.id[:12]} to {target}: {stats.files} files "
                f"({stats.files_skipped} already up to date), {stats.dirs} dirs, "
                f"{human_bytes(stats.bytes_written)} written"
            ]
        ),
        {
            "snapshot": info.id,
            "files": stats.files,
            "files_skipped": stats.files_skipped,
            "dirs": stats.dirs,
            "bytes_written": stats.bytes_written,
            "bytes_fetched": stats.bytes_fetched,
            "warnings": warnings,
        },
    )
    if stats.files_failed:
        raise IntegrityError(
            f"{stats.files_failed} file(s) were not restored because their data failed verification "
            "(damaged or tampered objects on the server); every other file was restored"
        )
    if warnings:
        raise SystemExit(int(ExitCode.PARTIAL))
