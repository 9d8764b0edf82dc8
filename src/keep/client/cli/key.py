"""`keep key passwd | verify | recovery-kit`: the owner's credentials.

Changing a credential never re-encrypts data: only one key slot is rewritten.
Each change is crash-safe: the new slot is built and unwrapped locally, the
server swaps verifier, salt, parameters and slot in one transaction, and a fresh
login with the new credential confirms it. An interruption before the swap
leaves the old credential working, after it the new one.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import click

from keep.client.cli.main import CliContext, cli
from keep.client.cli.session import (
    UsageError,
    check_password_strength,
    connect,
    owner_login_for,
    owner_options,
    read_password,
    reserved_output,
)
from keep.client.device.account import (
    new_password_credential,
    new_recovery_credential,
    owner_login,
    recovery_login,
)
from keep.client.device.recovery_kit import recovery_kit as make_kit
from keep.client.device.state import DeviceState
from keep.protocol.api import Route
from keep.protocol.errors import IntegrityError


@cli.group()
def key() -> None:
    """Password, recovery kit and the password drill."""


@key.command()
@owner_options
@click.option("--new-password-file", type=click.Path(dir_okay=False, path_type=Path), help="New password.")
@click.option("--weak-password-ok", is_flag=True, help="Accept a new password that is easy to guess.")
@click.pass_obj
def passwd(
    ctx: CliContext,
    password_file: Path | None,
    recovery_kit: Path | None,
    new_password_file: Path | None,
    weak_password_ok: bool,
) -> None:
    """Change the password, proving ownership with the current one or the
    recovery kit (no data is re-encrypted; devices keep working)."""
    state = DeviceState.load(ctx.home)
    if new_password_file is None and not os.isatty(0):
        raise UsageError("give --new-password-file or run on a terminal")
    with connect(ctx, state.server_url, state.device_token, state.ca_file) as remote:
        session, master = owner_login_for(state, remote, password_file, recovery_kit)
        new_password = (
            read_password(new_password_file, confirm=True)
            if new_password_file
            else click.prompt("New password", hide_input=True, confirmation_prompt=True, err=True).encode()
        )
        check_password_strength(new_password, weak_password_ok)
        body = new_password_credential(state.account, master, new_password)
        remote.request_json("PUT", Route.KEYSLOT_PASSWORD, body, token=session)
        _, again = owner_login(remote, state.account, new_password)
        if again != master:
            raise IntegrityError("the server did not store the new password slot correctly")
    ctx.emit("Password changed. The old password no longer works; devices are unaffected.", {"changed": True})


@key.command()
@owner_options
@click.pass_obj
def verify(ctx: CliContext, password_file: Path | None, recovery_kit: Path | None) -> None:
    """Check that the password (or the recovery kit) still unlocks the
    account (changes nothing)."""
    state = DeviceState.load(ctx.home)
    with connect(ctx, state.server_url, state.device_token, state.ca_file) as remote:
        owner_login_for(state, remote, password_file, recovery_kit)
    ctx.emit(
        f"The password unlocks account {state.account!r} (key {state.keys.fingerprint}).",
        {"ok": True, "fingerprint": state.keys.fingerprint},
    )


@key.command("recovery-kit")
@owner_options
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the kit here (0600).")
@click.pass_obj
def recovery_kit_cmd(
    ctx: CliContext, password_file: Path | None, recovery_kit: Path | None, output: Path | None
) -> None:
    """Make a new recovery kit; the previous recovery key stops working. The
    output file is claimed before anything changes on the server."""
    state = DeviceState.load(ctx.home)
    with (
        reserved_output(output) as write_kit,
        connect(ctx, state.server_url, state.device_token, state.ca_file) as remote,
    ):
        session, master = owner_login_for(state, remote, password_file, recovery_kit)
        rkey, body = new_recovery_credential(state.account, master)
        new_kit = make_kit(state.server_url, state.account, rkey, master, datetime.date.today())
        remote.request_json("PUT", Route.KEYSLOT_RECOVERY, body, token=session)
        write_kit(new_kit)
        _, again = recovery_login(remote, state.account, rkey)
        if again != master:
            raise IntegrityError("the server did not store the new recovery slot correctly")
    done = f"New recovery kit written to {output}; the previous one no longer works."
    ctx.emit(
        new_kit if output is None else done,
        {"recovery_kit_file": str(output) if output else None, "recovery_kit": None if output else new_kit},
    )
