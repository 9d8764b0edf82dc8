"""`keep`: the click group, its context object and the one place where errors
become a message and an exit code (docs/cli.md lists the codes)."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from keep.client.device.config import Config, config_path, load_config, state_dir
from keep.protocol.errors import ExitCode, KeepError

RECURSION_LIMIT = 50_000  # ≈ 20,000 directory levels; paths give out long before (PATH_MAX)

# The module of each command, imported only when that command runs (or for
# --help): `keep backup`, run by a timer, does not import the admin page, the
# check-in or the maintenance commands.
COMMANDS = {
    "admin": "admin",
    "backup": "backup",
    "check": "check",
    "checkin": "checkin",
    "completion": "completion",
    "copy": "copy",
    "device": "device",
    "diff": "explore",
    "drill": "check",
    "dump": "explore",
    "find": "explore",
    "forget": "maintenance",
    "init": "init",
    "key": "key",
    "login": "login",
    "ls": "listing",
    "mount": "mount",
    "prune": "maintenance",
    "restore": "restore",
    "rewrite": "history",
    "schedule": "schedule",
    "snapshots": "listing",
    "stats": "listing",
    "tag": "history",
    "umount": "mount",
    "unlock": "maintenance",
}
# Names before 0.2, still run (timers an older `keep schedule` installed use
# them) but not listed.
OLD_NAMES = {"agent": "checkin", "phonehome": "checkin"}


@dataclass
class CliContext:
    json_output: bool
    home: Path
    config_file: Path
    insecure_http: bool = False
    ca_file: str | None = None  # --ca-file / $KEEP_CA_FILE: trust this CA for https
    _config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_file)
        return self._config

    def emit(self, human: str, data: Any) -> None:
        """Print `data` as JSON with --json, else the human text."""
        if self.json_output:
            click.echo(json.dumps(data, indent=1, sort_keys=True, default=str))
        elif human:
            click.echo(human)

    @property
    def interactive(self) -> bool:
        return sys.stderr.isatty() and not self.json_output


class KeepGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name) or OLD_NAMES.get(cmd_name)
        if module is not None and cmd_name not in self.commands:
            importlib.import_module(f"keep.client.cli.{module}")  # registers its commands
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeepError as exc:
            click.echo(f"keep: {exc}", err=True)
            ctx.exit(int(exc.exit_code))
        except (KeyboardInterrupt, click.exceptions.Abort):  # Ctrl-C anywhere, Ctrl-C/D at a prompt
            click.echo("keep: interrupted; nothing already stored is lost", err=True)
            ctx.exit(int(ExitCode.INTERRUPTED))
        except OSError as exc:
            click.echo(f"keep: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
            ctx.exit(int(ExitCode.FATAL))
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:
            if os.environ.get("KEEP_DEBUG"):
                raise
            click.echo(f"keep: internal error ({type(exc).__name__}: {exc}); please report it", err=True)
            ctx.exit(int(ExitCode.FATAL))


@click.group(cls=KeepGroup)
@click.version_option(package_name="keep-backup", prog_name="keep")
@click.option(
    "--json", "json_output", is_flag=True, help="Machine-readable output (before or after the command)."
)
@click.option(
    "--insecure-http", is_flag=True, help="Allow plain http to a server that is not on this machine."
)
@click.option(
    "--ca-file",
    envvar="KEEP_CA_FILE",
    type=click.Path(dir_okay=False, exists=True),
    help="Verify the server's certificate against this CA (also $KEEP_CA_FILE); remembered by init/login.",
)
@click.pass_context
def cli(ctx: click.Context, json_output: bool, insecure_http: bool, ca_file: str | None) -> None:
    """Keep: zero-knowledge, deduplicating, encrypted backups."""
    ctx.obj = CliContext(json_output, state_dir(), config_path(), insecure_http, ca_file)


def main() -> None:
    # Trees are walked recursively, one Python frame per directory level;
    # Python 3.11 frames do not use the C stack, so deep trees are safe.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), RECURSION_LIMIT))
    cli(args=global_flags_first(sys.argv[1:]), prog_name="keep")


def load_command(args: list[str]) -> None:
    """Import the module of the command that `args` (the program's
    arguments) name, as running it would; nothing if they name none. A
    module that fails to import is left to the command line, which imports
    it again and reports the failure in one line."""
    args = global_flags_first(args)
    for at, arg in enumerate(args):
        if arg.startswith("-"):
            continue
        if at > 0 and args[at - 1] == "--ca-file":
            continue  # the option's value
        module = COMMANDS.get(arg) or OLD_NAMES.get(arg)
        if module is not None:
            with contextlib.suppress(Exception):
                importlib.import_module(f"keep.client.cli.{module}")
        return


def global_flags_first(args: list[str]) -> list[str]:
    """`keep snapshots --json` as well as `keep --json snapshots`: the global
    `--json` is moved to the front (never one after a `--`)."""
    end = args.index("--") if "--" in args else len(args)
    if "--json" in args[1:end]:
        args = list(args)
        args.remove("--json")
        args.insert(0, "--json")
    return args
