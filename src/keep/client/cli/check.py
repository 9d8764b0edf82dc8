"""`keep check` and `keep drill`: is the repository restorable?"""

from __future__ import annotations

import datetime

import click

from keep.client.cli.main import CliContext, cli
from keep.client.cli.progress import Progress, Reading
from keep.client.cli.session import open_repository, pick_snapshot, snapshot_filter_options
from keep.client.engine.checker import Checker, parse_subset
from keep.client.engine.drill import SAMPLE_FILES, drill
from keep.client.engine.lease import Lease
from keep.client.text import human_bytes, rfc3339
from keep.protocol.errors import IntegrityError


@cli.command()
@click.option("--read-data", is_flag=True, help="Also download every pack and verify every blob.")
@click.option("--read-data-subset", metavar="N%|n/t", help="Verify a random N% of packs, or slice n of t.")
@click.pass_obj
def check(ctx: CliContext, read_data: bool, read_data_subset: str | None) -> None:
    """Check that every snapshot can be restored; name what cannot."""
    select = parse_subset(read_data_subset) if read_data_subset else (list if read_data else None)
    with open_repository(ctx) as (_, repo), Lease(repo, purpose="check"):
        checker = Checker(repo, select)
        r = checker.result

        def read() -> Reading:
            if not r.packs_to_read:
                return Reading(0, None, current=f"{r.trees:,} trees checked")
            return Reading(r.bytes_read, r.bytes_to_read, r.packs_read, r.packs_to_read, "reading packs")

        with Progress(ctx.interactive, "check", read):
            result = checker.run()
    lines = [f"error: {e}" for e in result.errors]
    lines += [f"affected: snapshot {a.snapshot[:12]}: {a.path}: {a.problem}" for a in result.affected]
    if result.affected_count > len(result.affected):
        lines.append(f"... and {result.affected_count - len(result.affected)} more affected files")
    lines += [f"note: {n}" for n in result.notes]
    lines.append(
        f"{result.snapshots} snapshots, {result.trees} trees, {result.packs} packs checked"
        + (f", {result.packs_read} packs ({human_bytes(result.bytes_read)}) read" if select else "")
        + (": no errors" if result.ok else f": {len(result.errors)} error(s)")
    )
    ctx.emit(
        "\n".join(lines),
        {
            "ok": result.ok,
            "snapshots": result.snapshots,
            "trees": result.trees,
            "packs": result.packs,
            "packs_read": result.packs_read,
            "bytes_read": result.bytes_read,
            "errors": result.errors,
            "affected": [vars(a) for a in result.affected],
            "affected_count": result.affected_count,
            "notes": result.notes,
        },
    )
    if not result.ok:
        raise IntegrityError("the repository has errors (listed above); snapshots named there are damaged")


@cli.command("drill")
@click.argument("snapshot", default="latest")
@click.option("--files", "count", type=click.IntRange(1), default=SAMPLE_FILES, show_default=True)
@snapshot_filter_options
@click.pass_obj
def drill_command(
    ctx: CliContext,
    snapshot: str,
    count: int,
    host_filter: tuple[str, ...],
    path_filter: tuple[str, ...],
    tag_filter: tuple[str, ...],
) -> None:
    """Restore a random sample of SNAPSHOT's files and compare them with what
    was backed up; the result is kept and shown by `keep stats`."""
    with open_repository(ctx) as (_, repo), Lease(repo, purpose="drill"):
        repo.load_index()
        info = pick_snapshot(ctx, repo, snapshot, host_filter, path_filter, tag_filter)
        result = drill(repo, info, ctx.home, count)
    when = datetime.datetime.fromtimestamp(result.time).strftime("%Y-%m-%d %H:%M")
    lines = [f"mismatch: {m['path']}: {m['problem']}" for m in result.mismatches]
    lines.append(
        f"restore drill of snapshot {info.id[:12]} at {when}: {result.files} files, "
        f"{human_bytes(result.bytes)}, "
        + ("all match" if result.ok else f"{len(result.mismatches)} MISMATCH(ES)")
        + f" ({result.seconds:.1f} s)"
    )
    ctx.emit("\n".join(lines), {**vars(result), "time": rfc3339(result.time), "ok": result.ok})
    if not result.ok:
        raise IntegrityError("the restore drill found files that do not match their backup")
