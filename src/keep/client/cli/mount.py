"""`keep mount MOUNTPOINT` and `keep umount MOUNTPOINT`: browse every
snapshot as a read-only file system (client/engine/mount.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import click

from keep.client.cli.main import CliContext, cli
from keep.client.cli.session import UsageError, open_repository, pick_snapshot, snapshot_filter_options
from keep.client.engine import snapshot_filter
from keep.client.engine.lease import Lease
from keep.protocol.errors import NotFoundError


@cli.command()
@click.argument("mountpoint", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option(
    "--allow-other", is_flag=True, help="Let other users see the mount (their permissions still apply)."
)
@snapshot_filter_options
@click.pass_obj
def mount(
    ctx: CliContext,
    mountpoint: Path,
    allow_other: bool,
    host_filter: tuple[str, ...],
    path_filter: tuple[str, ...],
    tag_filter: tuple[str, ...],
) -> None:
    """Every snapshot as a read-only file system at MOUNTPOINT, until Ctrl-C
    or `keep umount MOUNTPOINT`. Reads are verified like a restore; a blob
    that fails verification is an I/O error, never wrong bytes."""
    try:
        import pyfuse3
        import trio

        from keep.client.engine.mount import SnapshotFS
    except ImportError:
        raise UsageError("`keep mount` needs the 'mount' extra: pip install 'keep-backup[mount]'") from None
    if any(mountpoint.iterdir()):
        raise UsageError(f"{mountpoint} is not empty: mount on an empty directory")
    with open_repository(ctx) as (_, repo), Lease(repo, purpose="mount"):
        snapshots = snapshot_filter.given(host_filter, path_filter, tag_filter).select(repo.snapshots())
        try:
            latest = pick_snapshot(ctx, repo, "latest", host_filter, path_filter, tag_filter, snapshots)
        except NotFoundError:
            latest = None  # no snapshot yet: an empty mount

        reported: set[tuple[str, str]] = set()

        def report(path: str, message: str) -> None:
            if (path, message) not in reported:  # the kernel retries a failed read: said once
                reported.add((path, message))
                click.echo(f"keep mount: {path}: {message}; the read failed (EIO)", err=True)

        fs = SnapshotFS(repo, snapshots, latest, report)
        options = set(pyfuse3.default_options) | {"ro", "fsname=keep", "subtype=keep"}
        if allow_other:
            options.add("allow_other")
        try:
            pyfuse3.init(fs, str(mountpoint), options)
        except RuntimeError as exc:
            raise UsageError(f"cannot mount on {mountpoint}: {exc}") from None
        click.echo(
            f"{len(snapshots)} snapshots at {mountpoint}; Ctrl-C or `keep umount {mountpoint}` to end",
            err=True,
        )
        unmounted = False
        try:
            trio.run(pyfuse3.main)
            unmounted = True  # `keep umount` (or fusermount3 -u): the kernel ended the session
        except BaseException as exc:
            if not _ctrl_c(exc):
                raise
        finally:
            pyfuse3.close(unmount=not unmounted)
            fs.blobs.close()
    click.echo(f"unmounted {mountpoint}", err=True)


def _ctrl_c(exc: BaseException) -> bool:
    """Whether `exc` is Ctrl-C, alone or as all of a group (trio's tasks
    each see it)."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(KeyboardInterrupt)
        return rest is None
    return False


@cli.command()
@click.argument("mountpoint", type=click.Path(file_okay=False, exists=True, path_type=Path))
def umount(mountpoint: Path) -> None:
    """End a `keep mount` (it then exits 0)."""
    helper = shutil.which("fusermount3")
    if helper is None:
        raise UsageError("fusermount3 is missing (Debian: apt install fuse3)")
    result = subprocess.run([helper, "-u", str(mountpoint)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise UsageError(f"cannot unmount {mountpoint}: {result.stderr.strip() or 'fusermount3 failed'}")
