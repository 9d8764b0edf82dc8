"""Opening the repository for a command: device state → Remote → Repository,
and reading passwords from a file, $KEEP_PASSWORD_FILE or a prompt."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from keep.client.cli.main import CliContext
from keep.client.device_state import DeviceState
from keep.client.remote import Remote
from keep.client.repository import Repository
from keep.protocol.errors import ExitCode, KeepError
from keep.protocol.keys import RepositoryKeys


class UsageError(KeepError):
    """Raised when the command line or environment is incomplete."""

    exit_code = ExitCode.USAGE


def read_password(password_file: Path | None, confirm: bool = False) -> bytes:
    source = password_file or (Path(p) if (p := os.environ.get("KEEP_PASSWORD_FILE")) else None)
    if source is not None:
        try:
            text = source.read_text()
        except OSError as exc:
            raise UsageError(f"cannot read password file {source}: {exc.strerror}") from None
        password = text.rstrip("\r\n")
    elif sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=confirm, err=True)
    else:
        raise UsageError("no password: use --password-file, KEEP_PASSWORD_FILE or a terminal")
    if not password:
        raise UsageError("the password is empty")
    return password.encode()


@contextmanager
def open_repository(ctx: CliContext) -> Iterator[tuple[DeviceState, Repository]]:
    state = DeviceState.load(ctx.home)
    with Remote(state.server_url, state.device_token, ca_file=state.ca_file) as remote:
        repo = Repository(remote, RepositoryKeys.from_master(state.master), ctx.home / "cache", state.suite)
        yield state, repo
