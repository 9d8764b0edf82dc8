"""`keep copy`: snapshots into another account, on this server or another
(client/engine/copy.py)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import click

from keep.client.cli.main import CliContext, cli
from keep.client.cli.session import (
    UsageError,
    endpoint,
    open_repository,
    pick_snapshot,
    snapshot_filter_options,
)
from keep.client.device.account import owner_login, preferred_suite
from keep.client.engine import snapshot_filter
from keep.client.engine.copy import Copied, copy
from keep.client.engine.repository import Repository
from keep.client.text import human_bytes
from keep.protocol.keys import RepositoryKeys


def _target_password(path: Path | None) -> bytes:
    """The target owner's password: from --to-password-file, else a prompt
    (never the source's $KEEP_PASSWORD_FILE: that is the other account's)."""
    if path is not None:
        try:
            text = path.read_text().rstrip("\r\n")
        except OSError as exc:
            raise UsageError(f"cannot read password file {path}: {exc.strerror}") from None
    elif sys.stdin.isatty():
        text = click.prompt("Password of the target account", hide_input=True, err=True)
    else:
        raise UsageError("no password for the target account: give --to-password-file or use a terminal")
    if not text:
        raise UsageError("the target account's password is empty")
    return text.encode()


@cli.command("copy")
@click.argument("snapshot_refs", nargs=-1)
@click.option("--to-server", required=True, metavar="URL", help="The target's keep-server.")
@click.option("--to-account", required=True, metavar="NAME", help="The target account (it must exist).")
@click.option(
    "--to-password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The target account's owner password (else a prompt).",
)
@snapshot_filter_options
@click.pass_obj
def copy_command(
    ctx: CliContext,
    snapshot_refs: tuple[str, ...],
    to_server: str,
    to_account: str,
    to_password_file: Path | None,
    host_filter: tuple[str, ...],
    path_filter: tuple[str, ...],
    tag_filter: tuple[str, ...],
) -> None:
    """Copy snapshots (default: all the filters select) into another account,
    re-encrypted under its keys and deduplicated against what it holds; run
    again after an interruption, it goes on where it stopped."""
    password = _target_password(to_password_file)
    with open_repository(ctx) as (_, source):
        listed = source.snapshots()
        if snapshot_refs:
            chosen = [pick_snapshot(ctx, source, ref, listed=listed) for ref in snapshot_refs]
        else:
            chosen = snapshot_filter.given(host_filter, path_filter, tag_filter).select(listed)
        with endpoint(ctx).remote(to_server) as remote:
            session, master = owner_login(remote, to_account, password)
            remote.token = session
            place = hashlib.sha256(f"{remote.base_url}\0{to_account}".encode()).hexdigest()[:16]
            target = Repository(
                remote,
                RepositoryKeys.from_master(master),
                ctx.home / "copies" / place / "cache",
                preferred_suite(),
            )
            target.owner_key = master.owner_key()

            def said(c: Copied) -> None:
                if not ctx.json_output:
                    what = (
                        "already there"
                        if c.target is None
                        else f"copied as {c.target[:12]} ({human_bytes(c.bytes_read)} read)"
                    )
                    click.echo(f"{c.source[:12]}  {what}")

            done = copy(source, target, chosen, said)
    copied = [c for c in done if c.target is not None]
    ctx.emit(
        f"{len(copied)} snapshot(s) copied to {to_account} at {to_server}, "
        f"{len(done) - len(copied)} already there",
        [{"source": c.source, "target": c.target, "bytes_read": c.bytes_read} for c in done],
    )
