"""Opening the repository for a command: device state → Remote → Repository,
and reading passwords from a file, $KEEP_PASSWORD_FILE, $KEEP_PASSWORD_COMMAND
or a prompt."""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import click

from keep.client.cli.main import CliContext
from keep.client.device.account import owner_login, recovery_login
from keep.client.device.connection import Endpoint
from keep.client.device.recovery_kit import recovery_key_from_kit
from keep.client.device.state import STATE_FILE, DeviceState
from keep.client.engine import snapshot_filter
from keep.client.engine.repository import Repository, SnapshotInfo
from keep.client.remote import Remote
from keep.protocol.errors import ExitCode, IntegrityError, KeepError
from keep.protocol.keys import MasterKey
from keep.protocol.recovery import decode_recovery_key

MIN_PASSWORD_SCORE = 3  # zxcvbn: 3 "safely unguessable: moderate protection from offline slow-hash attacks"


class UsageError(KeepError):
    """Raised when the command line or environment is incomplete."""

    exit_code = ExitCode.USAGE


WHERE_PASSWORDS_COME_FROM = "--password-file, KEEP_PASSWORD_FILE, KEEP_PASSWORD_COMMAND"


def read_password(password_file: Path | None, confirm: bool = False) -> bytes:
    """The password from --password-file, else the file $KEEP_PASSWORD_FILE
    names, else what $KEEP_PASSWORD_COMMAND prints, else a terminal prompt."""
    source = password_file or (Path(p) if (p := os.environ.get("KEEP_PASSWORD_FILE")) else None)
    command = os.environ.get("KEEP_PASSWORD_COMMAND")
    if source is not None:
        try:
            text = source.read_text()
        except OSError as exc:
            raise UsageError(f"cannot read password file {source}: {exc.strerror}") from None
        password = text.rstrip("\r\n")
    elif command:
        password = _password_from_command(command)
    elif sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=confirm, err=True)
    else:
        raise UsageError(f"no password: use {WHERE_PASSWORDS_COME_FROM} or a terminal")
    if not password:
        raise UsageError("the password is empty")
    return password.encode()


def _password_from_command(command: str) -> str:
    """The first line a password command prints (like restic's
    --password-command: split as a shell would, run without one; its stderr
    and prompts reach the terminal, its output is never shown)."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"KEEP_PASSWORD_COMMAND cannot be split into words: {exc}") from None
    if not argv:
        raise UsageError("KEEP_PASSWORD_COMMAND is empty")
    try:
        result = subprocess.run(argv, stdout=subprocess.PIPE, check=False)
    except OSError as exc:
        raise UsageError(f"cannot run KEEP_PASSWORD_COMMAND ({argv[0]}): {exc.strerror}") from None
    if result.returncode != 0:
        raise UsageError(f"KEEP_PASSWORD_COMMAND ({argv[0]}) failed with exit status {result.returncode}")
    try:
        return result.stdout.decode().splitlines()[0] if result.stdout else ""
    except UnicodeDecodeError:
        raise UsageError("KEEP_PASSWORD_COMMAND printed something that is not UTF-8 text") from None


def new_device_target(ctx: CliContext, server_url: str | None, account: str | None) -> tuple[str, str]:
    """Server and account for `init` / `login`, from options or keep.toml,
    refusing to overwrite an existing device credential."""
    server_url = server_url or os.environ.get("KEEP_SERVER") or ctx.config.server_url
    account = account or os.environ.get("KEEP_ACCOUNT") or ctx.config.account
    if not server_url or not account:
        raise UsageError(
            "--server and --account are required (or KEEP_SERVER and KEEP_ACCOUNT, or keep.toml)"
        )
    if (ctx.home / STATE_FILE).exists():
        raise UsageError(f"this device is already set up ({ctx.home / STATE_FILE})")
    return server_url, account


@contextmanager
def reserved_output(path: Path | None) -> Iterator[Callable[[str], None]]:
    """Claim `path` (created empty, mode 0600, never over an existing file or
    through a link) *before* anything changes on the server, and yield the
    function that fills it. If the command fails before filling it, the empty
    file is removed; if filling it fails (a full disk), the text is printed
    instead, so what the server now expects is never lost."""
    if path is None:
        yield lambda text: None
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}; nothing was changed") from None
    filled = False

    def fill(text: str) -> None:
        nonlocal filled
        try:
            data = text.encode()
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        except OSError as exc:
            click.echo(text)
            raise KeepError(
                f"could not write {path} ({exc.strerror}); it is printed above instead: copy it now"
            ) from None
        filled = True

    try:
        yield fill
    except BaseException:
        if not filled:
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise
    finally:
        os.close(fd)


def check_password_strength(password: bytes, allow_weak: bool) -> None:
    """Refuse a password an attacker would guess (zxcvbn's estimate below 3
    of 4), saying why, unless the owner insists."""
    if allow_weak:
        return
    from zxcvbn import zxcvbn  # a few MB of dictionaries: loaded only here

    verdict = zxcvbn(password.decode(errors="replace")[:100])
    if verdict["score"] >= MIN_PASSWORD_SCORE:
        return
    feedback = verdict["feedback"]
    why = " ".join(filter(None, [feedback.get("warning", ""), *feedback.get("suggestions", [])]))
    raise UsageError(
        f"that password is too easy to guess ({why or 'too short or too common'}); "
        "it protects every backup if the server is ever breached. Choose a longer one "
        "(a few uncommon words), or give --weak-password-ok"
    )


def owner_login_for(
    state: DeviceState, remote: Remote, password_file: Path | None, recovery_kit: Path | None
) -> tuple[str, MasterKey]:
    """(owner session, master key) from the recovery kit if given, else the
    password; refuses a credential that opens another account's key."""
    if recovery_kit is not None:
        try:
            text = recovery_kit.read_text()
        except OSError as exc:
            raise UsageError(f"cannot read recovery kit {recovery_kit}: {exc.strerror}") from None
        session, master = recovery_login(
            remote, state.account, decode_recovery_key(recovery_key_from_kit(text))
        )
    else:
        session, master = owner_login(remote, state.account, read_password(password_file))
    if not state.keys.opened_by(master):
        raise IntegrityError("that credential opens a different key than this device's; nothing was changed")
    return session, master


def endpoint(ctx: CliContext) -> Endpoint:
    return Endpoint(ctx.ca_file, ctx.config.ca_file, ctx.insecure_http)


def connect(ctx: CliContext, server_url: str, token: str | None = None, ca_file: str | None = None) -> Remote:
    """A connection to the server (`ca_file`: the one device.json remembers)."""
    return endpoint(ctx).remote(server_url, token, ca_file)


@contextmanager
def open_repository(ctx: CliContext) -> Iterator[tuple[DeviceState, Repository]]:
    with endpoint(ctx).repository(ctx.home) as opened:
        yield opened


def become_owner(
    state: DeviceState, repo: Repository, password_file: Path | None, recovery_kit: Path | None
) -> None:
    """Switch the repository to the owner (password or recovery kit), for
    commands that delete: an owner session on the server, and the owner's
    signing key for the records that say what was removed."""
    remote = repo.remote
    if recovery_kit is None and not (
        password_file
        or os.environ.get("KEEP_PASSWORD_FILE")
        or os.environ.get("KEEP_PASSWORD_COMMAND")
        or sys.stdin.isatty()
    ):
        raise UsageError(f"this command needs the owner: give {WHERE_PASSWORDS_COME_FROM} or --recovery-kit")
    session, master = owner_login_for(state, remote, password_file, recovery_kit)
    remote.token = session
    repo.owner_key = master.owner_key()


def owner_options(fn: Callable[..., None]) -> Callable[..., None]:
    """--password-file / --recovery-kit for commands that need the owner."""
    fn = click.option(
        "--recovery-kit",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Log in as the owner with the recovery kit instead of the password.",
    )(fn)
    return click.option(
        "--password-file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Read the owner password from this file (or $KEEP_PASSWORD_FILE, $KEEP_PASSWORD_COMMAND).",
    )(fn)


def snapshot_filter_options(fn: Callable[..., None]) -> Callable[..., None]:
    """--host / --path / --tag: which snapshots the command considers (and
    what `latest` means); without them `latest` is this device's own."""
    for name, help_text in (
        ("--tag", "Only snapshots with this tag (repeatable: all of them)."),
        ("--path", "Only snapshots of this path (repeatable: all of them)."),
        ("--host", "Only snapshots from this host (repeatable: any of them)."),
    ):
        fn = click.option(
            name, name.strip("-") + "_filter", multiple=True, metavar=name.strip("-").upper(), help=help_text
        )(fn)
    return fn


def pick_snapshot(
    ctx: CliContext,
    repo: Repository,
    ref: str,
    hosts: tuple[str, ...] = (),
    paths: tuple[str, ...] = (),
    tags: tuple[str, ...] = (),
    listed: Sequence[SnapshotInfo] | None = None,
) -> SnapshotInfo:
    """The snapshot `ref` names (`latest`: the newest matching the filters,
    or this device's own) among `listed` (default: the server's listing);
    a fallback is said on stderr."""
    chosen = snapshot_filter.given(hosts, paths, tags)
    default = snapshot_filter.device_default(socket.gethostname(), ctx.config.backup.sources)
    snapshots = repo.snapshots() if listed is None else listed
    info, note = snapshot_filter.resolve(ref, snapshots, chosen, default)
    if note:
        click.echo(note, err=True)
    return info
