"""`keep init`: create the account, enroll this device, print the recovery kit."""

from __future__ import annotations

import datetime
from pathlib import Path

import click
from keep.client.account import create_account
from keep.client.cli.main import CliContext, cli
from keep.client.cli.session import (
    check_password_strength,
    connect,
    new_device_target,
    read_password,
    reserved_output,
)
from keep.client.recovery_kit import recovery_kit


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
) -> None:
    """Create a new account and set up this device. Everything that can be
    checked locally (the password's strength, the kit file) is checked before
    the account exists."""
    server_url, account = new_device_target(ctx, server_url, account)
    password = read_password(password_file, confirm=True)
    check_password_strength(password, weak_password_ok)
    with reserved_output(kit_file) as write_kit:
        with connect(ctx, server_url) as remote:
            created = create_account(remote, account, password, device_name, invite)
        created.state.save(ctx.home)
        kit = recovery_kit(server_url, account, created.recovery_key, created.master, datetime.date.today())
        write_kit(kit)
    ctx.emit(
        (kit if kit_file is None else f"Recovery kit written to {kit_file}. Print it and store it safely.")
        + f"\nAccount {account!r} created; this device is enrolled as {created.state.device_id}.",
        {
            "account": account,
            "device_id": created.state.device_id,
            "server": server_url,
            "fingerprint": created.state.keys.fingerprint,
            "recovery_kit_file": str(kit_file) if kit_file else None,
            "recovery_kit": kit if kit_file is None else None,
        },
    )
    if kit_file is None and not ctx.json_output:
        click.echo("Write the recovery kit down now: it is shown only once.", err=True)
