"""`keep init`: create the account, enroll this device, print the recovery kit,
and write keep.toml so that the timer's `keep backup` has something to do."""

from __future__ import annotations

import datetime
import os
import shlex
import sys
from pathlib import Path

import click

from keep.client.cli.main import CliContext, cli
from keep.client.cli.session import (
    UsageError,
    check_password_strength,
    connect,
    new_device_target,
    read_password,
    reserved_output,
)
from keep.client.device.account import create_account
from keep.client.device.config import ConfigError, update_config
from keep.client.device.recovery_kit import recovery_kit


@cli.command()
@click.option("--server", "server_url", help="Server URL (default: [server] url in keep.toml).")
@click.option("--account", help="Account name (default: [server] account in keep.toml).")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--device-name", help="Name of this device (default: host name; sent sealed).")
@click.option(
    "--invite", help="Invitation from the server's operator (servers run with --registration invite)."
)
@click.option(
    "--recovery-kit",
    "kit_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the recovery kit to this file (0600) instead of the terminal.",
)
@click.option("--weak-password-ok", is_flag=True, help="Accept a password that is easy to guess.")
@click.option(
    "--source",
    "sources",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A directory or file to back up ([backup] sources); repeatable. Asked on a terminal.",
)
@click.pass_obj
def init(
    ctx: CliContext,
    server_url: str | None,
    account: str | None,
    password_file: Path | None,
    device_name: str | None,
    invite: str | None,
    kit_file: Path | None,
    weak_password_ok: bool,
    sources: tuple[Path, ...],
) -> None:
    """Create a new account and set up this device. Everything that can be
    checked locally (the password's strength, the kit file) is checked before
    the account exists."""
    server_url, account = new_device_target(ctx, server_url, account)
    password = read_password(password_file, confirm=True)
    check_password_strength(password, weak_password_ok)
    chosen = _sources(ctx, sources)
    with reserved_output(kit_file) as write_kit:
        with connect(ctx, server_url) as remote:
            created = create_account(remote, account, password, device_name, invite)
        created.state.save(ctx.home)
        kit = recovery_kit(server_url, account, created.recovery_key, created.master, datetime.date.today())
        write_kit(kit)
    configured = _write_config(ctx, server_url, account, chosen)
    ctx.emit(
        (kit if kit_file is None else f"Recovery kit written to {kit_file}. Print it and store it safely.")
        + f"\nAccount {account!r} created; this device is enrolled as {created.state.device_id}."
        + ("" if configured.startswith("warning") else f"\n{configured}"),
        {
            "account": account,
            "device_id": created.state.device_id,
            "server": server_url,
            "fingerprint": created.state.keys.fingerprint,
            "recovery_kit_file": str(kit_file) if kit_file else None,
            "recovery_kit": kit if kit_file is None else None,
            "sources": chosen,
            "config_file": str(ctx.config_file),
        },
    )
    if kit_file is None and not ctx.json_output:
        click.echo("Write the recovery kit down now: it is shown only once.", err=True)
    if configured.startswith("warning"):
        click.echo(f"keep: {configured}", err=True)


def _sources(ctx: CliContext, given: tuple[Path, ...]) -> list[str]:
    """What this device backs up: --source, else what keep.toml already says,
    else the owner's answer on a terminal. Each must exist (checked before
    the account is made); none at all is allowed but said loudly."""
    if not given and ctx.config.backup.sources:
        return list(ctx.config.backup.sources)
    if not given and sys.stdin.isatty() and not ctx.json_output:
        answer = click.prompt(
            "What should this device back up? Directories, separated by spaces (empty: decide later)",
            default="",
            show_default=False,
            err=True,
        )
        given = tuple(Path(p) for p in shlex.split(answer))
    chosen = []
    for path in given:
        if not os.path.lexists(path):
            raise UsageError(f"cannot back up {path}: it does not exist; nothing was changed")
        chosen.append(os.path.abspath(path))
    return chosen


def _write_config(ctx: CliContext, server_url: str, account: str, sources: list[str]) -> str:
    """[server] and [backup] sources in keep.toml (other settings kept); the
    line that tells the owner what the timer will do."""
    try:
        update_config(ctx.config_file, "server", {"url": server_url, "account": account})
        if sources:
            update_config(ctx.config_file, "backup", {"sources": sources})
    except (OSError, ConfigError) as exc:
        return (
            f"warning: could not write {ctx.config_file} ({exc}): set [server] and [backup] "
            "sources there, or `keep backup` will have nothing to do"
        )
    if not sources:
        return (
            f"warning: nothing to back up yet: add [backup] sources to {ctx.config_file} "
            "(until then every scheduled backup fails)"
        )
    return f"Backing up {', '.join(sources)} (set in {ctx.config_file})."
