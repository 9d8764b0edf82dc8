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
from collections.abc import Callable
from pathlib import Path

import click
from keep.client.account import new_password_credential, new_recovery_credential, owner_login, recovery_login
from keep.client.cli.main import CliContext, cli
from keep.client.cli.session import (
    UsageError,
    check_password_strength,
    connect,
    owner_login_for,
    read_password,
    reserved_output,
)
from keep.client.device_state import DeviceState
from keep.client.recovery_kit import recovery_kit
from keep.client.remote import Remote
from keep.protocol.errors import IntegrityError
from keep.protocol.keys import MasterKey


def _owner(
    ctx: CliContext, remote: Remote, state: DeviceState, password_file: Path | None, kit: Path | None
) -> tuple[str, MasterKey]:
    """Owner session and master key from the current password or the
    recovery kit, after checking that it opens this device's key (not merely
    some account of that name)."""
    return owner_login_for(state, remote, password_file, kit)


def _kit_option(fn: Callable[..., None]) -> Callable[..., None]:
    return click.option(
        "--recovery-kit",
        "kit",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Prove ownership with the recovery kit instead of the password (a forgotten password).",
    )(fn)


@cli.group()
def key() -> None:
    """Password, recovery kit and the password drill."""


@key.command()
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path), help="Current password.")
@_kit_option
@click.option("--new-password-file", type=click.Path(dir_okay=False, path_type=Path), help="New password.")
@click.option("--weak-password-ok", is_flag=True, help="Accept a new password that is easy to guess.")
@click.pass_obj
def passwd(
    ctx: CliContext,
    password_file: Path | None,
    kit: Path | None,
    new_password_file: Path | None,
    weak_password_ok: bool,
) -> None:
    """Change the password, proving ownership with the current one or the
    recovery kit (no data is re-encrypted; devices keep working)."""
    state = DeviceState.load(ctx.home)
    if new_password_file is None and not os.isatty(0):
        raise UsageError("give --new-password-file or run on a terminal")
    with connect(ctx, state.server_url, state.device_token, state.ca_file) as remote:
        session, master = _owner(ctx, remote, state, password_file, kit)
        new_password = (
            read_password(new_password_file, confirm=True)
            if new_password_file
            else click.prompt("New password", hide_input=True, confirmation_prompt=True, err=True).encode()
        )
        check_password_strength(new_password, weak_password_ok)
        body = new_password_credential(state.account, master, new_password)
        remote.request_json("PUT", "/v1/keyslots/password", body, token=session)
        _, again = owner_login(remote, state.account, new_password)
        if again != master:
            raise IntegrityError("the server did not store the new password slot correctly")
    ctx.emit("Password changed. The old password no longer works; devices are unaffected.", {"changed": True})


@key.command()
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path))
@_kit_option
@click.pass_obj
def verify(ctx: CliContext, password_file: Path | None, kit: Path | None) -> None:
    """Check that the password (or the recovery kit) still unlocks the
    account (changes nothing)."""
    state = DeviceState.load(ctx.home)
    with connect(ctx, state.server_url, state.device_token, state.ca_file) as remote:
        _owner(ctx, remote, state, password_file, kit)
    ctx.emit(
        f"The password unlocks account {state.account!r} (key {state.keys.fingerprint}).",
        {"ok": True, "fingerprint": state.keys.fingerprint},
    )


@key.command("recovery-kit")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path))
@_kit_option
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the kit here (0600).")
@click.pass_obj
def recovery_kit_cmd(
    ctx: CliContext, password_file: Path | None, kit: Path | None, output: Path | None
) -> None:
    """Make a new recovery kit; the previous recovery key stops working. The
    output file is claimed before anything changes on the server."""
    state = DeviceState.load(ctx.home)
    with (
        reserved_output(output) as write_kit,
        connect(ctx, state.server_url, state.device_token, state.ca_file) as remote,
    ):
        session, master = _owner(ctx, remote, state, password_file, kit)
        rkey, body = new_recovery_credential(state.account, master)
        new_kit = recovery_kit(state.server_url, state.account, rkey, master, datetime.date.today())
        remote.request_json("PUT", "/v1/keyslots/recovery", body, token=session)
        write_kit(new_kit)
        _, again = recovery_login(remote, state.account, rkey)
        if again != master:
            raise IntegrityError("the server did not store the new recovery slot correctly")
    kit_text = new_kit
    ctx.emit(
        kit_text
        if output is None
        else f"New recovery kit written to {output}; the previous one no longer works.",
        {"recovery_kit_file": str(output) if output else None, "recovery_kit": None if output else kit_text},
    )
