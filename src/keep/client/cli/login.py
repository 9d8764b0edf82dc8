"""`keep login`: set up this device for an existing account (e.g. a new machine
after the old one was lost) with the password or the recovery kit."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from keep.client.cli.main import CliContext, cli
from keep.client.cli.session import UsageError, connect, new_device_target, read_password
from keep.client.device.account import enroll_device, owner_login, recovery_login
from keep.client.device.recovery_kit import recovery_key_from_kit
from keep.protocol.recovery import decode_recovery_key


@cli.command()
@click.option("--server", "server_url", help="Server URL (default: keep.toml).")
@click.option("--account", help="Account name (default: keep.toml).")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--recovery-kit",
    "kit",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Use the recovery kit file instead of the password.",
)
@click.option("--recovery-key", "use_key", is_flag=True, help="Type the recovery key at a prompt.")
@click.option("--device-name", help="Name of this device (default: host name).")
@click.pass_obj
def login(
    ctx: CliContext,
    server_url: str | None,
    account: str | None,
    password_file: Path | None,
    kit: Path | None,
    use_key: bool,
    device_name: str | None,
) -> None:
    """Enroll this device in an existing account."""
    server_url, account = new_device_target(ctx, server_url, account)
    key = None
    if kit is not None:
        key = decode_recovery_key(recovery_key_from_kit(kit.read_text()))
    elif use_key:
        if not sys.stdin.isatty():
            raise UsageError("--recovery-key needs a terminal; use --recovery-kit FILE")
        key = decode_recovery_key(click.prompt("Recovery key", err=True))
    with connect(ctx, server_url) as remote:
        if key is not None:
            session, master = recovery_login(remote, account, key)
        else:
            session, master = owner_login(remote, account, read_password(password_file))
        state = enroll_device(remote, session, account, master, device_name)
    state.save(ctx.home)
    ctx.emit(
        f"Logged in to {account!r}; this device is enrolled as {state.device_id}.\n"
        f"Key fingerprint: {master.fingerprint()} (compare it with your recovery kit)",
        {"account": account, "device_id": state.device_id, "fingerprint": master.fingerprint()},
    )
