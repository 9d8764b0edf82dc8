"""`keep tag` and `keep rewrite`: change history (the owner only;
client/engine/rewrite.py)."""

from __future__ import annotations

from pathlib import Path

import click

from keep.client.cli.main import CliContext, cli
from keep.client.cli.session import UsageError, become_owner, open_repository, owner_options, pick_snapshot
from keep.client.engine import rewrite as history
from keep.client.engine.patterns import Patterns
from keep.client.engine.repository import Repository, SnapshotInfo
from keep.client.engine.rewrite import Replaced


def _chosen(ctx: CliContext, repo: Repository, refs: tuple[str, ...]) -> list[SnapshotInfo]:
    if not refs:
        raise UsageError("name the snapshots (ids, or latest)")
    listed = repo.snapshots()
    chosen = {info.id: info for info in (pick_snapshot(ctx, repo, ref, listed=listed) for ref in refs)}
    return sorted(chosen.values(), key=lambda s: (s.snapshot.time_ns, s.id))


def _report(ctx: CliContext, verb: str, done: list[Replaced], forgotten: bool) -> None:
    lines = []
    for r in done:
        if r.replacement is None:
            lines.append(f"{r.original[:12]}  unchanged")
        else:
            removed = f" ({r.removed} entries left out)" if verb == "rewritten" else ""
            lines.append(f"{r.original[:12]}  {verb} as {r.replacement[:12]}{removed}")
    changed = [r for r in done if r.replacement is not None]
    if changed:
        lines.append(
            f"{len(changed)} original(s) forgotten; their data goes at the next `keep prune`"
            if forgotten
            else f"{len(changed)} original(s) kept: `keep forget` them when the new ones are right"
        )
    ctx.emit(
        "\n".join(lines),
        [{"original": r.original, "replacement": r.replacement, "removed": r.removed} for r in done],
    )


@cli.command()
@click.argument("snapshot_refs", nargs=-1)
@click.option("--add", "add", multiple=True, metavar="TAG", help="Add this tag (repeatable).")
@click.option("--remove", "remove", multiple=True, metavar="TAG", help="Remove this tag (repeatable).")
@click.option(
    "--set", "set_to", multiple=True, metavar="TAG", help="Replace all tags with these (repeatable)."
)
@owner_options
@click.pass_obj
def tag(
    ctx: CliContext,
    snapshot_refs: tuple[str, ...],
    add: tuple[str, ...],
    remove: tuple[str, ...],
    set_to: tuple[str, ...],
    password_file: Path | None,
    recovery_kit: Path | None,
) -> None:
    """Change the tags of snapshots (the owner only): each becomes a new,
    owner-signed snapshot with the same time and content, and the original
    is forgotten."""
    if not (add or remove or set_to):
        raise UsageError("say what to change: --add, --remove or --set")
    with open_repository(ctx) as (state, repo):
        chosen = _chosen(ctx, repo, snapshot_refs)
        become_owner(state, repo, password_file, recovery_kit)
        changes = [(s, history.retagged(s.snapshot, add, remove, set_to or None)) for s in chosen]
        done = history.replace(repo, changes, forget_originals=True)
    _report(ctx, "retagged", done, forgotten=True)


@cli.command()
@click.argument("snapshot_refs", nargs=-1)
@click.option("--exclude", "excludes", multiple=True, metavar="PATTERN", help="Leave out what this selects.")
@click.option(
    "--exclude-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    help="Patterns, one per line.",
)
@click.option("--forget", "forget_originals", is_flag=True, help="Forget the originals once rewritten.")
@owner_options
@click.pass_obj
def rewrite(
    ctx: CliContext,
    snapshot_refs: tuple[str, ...],
    excludes: tuple[str, ...],
    exclude_file: tuple[Path, ...],
    forget_originals: bool,
    password_file: Path | None,
    recovery_kit: Path | None,
) -> None:
    """Rewrite snapshots without what the patterns select (a secret, a cache
    backed up by mistake): new owner-signed snapshots with the same time;
    the originals are forgotten only with --forget, and the data only they
    held goes at the next `keep prune`."""
    patterns = list(excludes)
    for f in exclude_file:
        patterns += [ln for ln in f.read_text().splitlines() if ln.strip()]
    selector = Patterns(patterns)
    if not selector:
        raise UsageError("say what to leave out: --exclude PATTERN or --exclude-file F")
    with open_repository(ctx) as (state, repo):
        chosen = _chosen(ctx, repo, snapshot_refs)
        become_owner(state, repo, password_file, recovery_kit)
        done = history.rewrite(repo, chosen, selector, forget_originals)
    _report(ctx, "rewritten", done, forgotten=forget_originals)
