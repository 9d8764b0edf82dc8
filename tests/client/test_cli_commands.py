"""The command table that lets `keep` import only the command it runs."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys

import pytest

import keep.client.cli
from keep.client.cli.main import COMMANDS, OLD_NAMES, cli
from tests.client.conftest import KEEP


def test_the_command_table_names_every_command_and_its_module() -> None:
    for module in pkgutil.iter_modules(keep.client.cli.__path__):
        importlib.import_module(f"keep.client.cli.{module.name}")
    registered = {
        name: command.callback.__module__ for name, command in cli.commands.items() if command.callback
    }
    everything = COMMANDS | OLD_NAMES
    assert registered == {name: f"keep.client.cli.{module}" for name, module in everything.items()}


def test_help_lists_every_command_and_a_command_runs() -> None:
    out = subprocess.run([KEEP, "--help"], capture_output=True, text=True, check=True).stdout
    listed = {line.split()[0] for line in out.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == set(COMMANDS)
    assert (
        "Usage: keep backup"
        in subprocess.run([KEEP, "backup", "--help"], capture_output=True, text=True, check=True).stdout
    )


def test_backup_imports_neither_the_admin_page_nor_the_agent() -> None:
    code = (
        "import json, sys; from click.testing import CliRunner; from keep.client.cli.main import cli; "
        "CliRunner().invoke(cli, ['backup', '--help']); "
        "print(json.dumps([m for m in sys.modules if m.startswith('keep.client.cli.')]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out)
    assert "keep.client.cli.backup" in loaded
    assert not {"keep.client.cli.admin", "keep.client.cli.agent", "keep.client.cli.maintenance"} & set(loaded)


@pytest.mark.parametrize("command", ["backup", "restore"])
def test_the_daily_commands_start_without_what_they_do_not_use(command: str) -> None:
    """Every module imported is start-up time on every timer run: a backup
    or a restore does not import the archive formats (`keep dump`), git's
    patterns (only once there are patterns), Argon2 (only a password
    derives a key) or difflib (only a mistyped setting)."""
    code = (
        "import json, sys; from keep.client.cli import main; "
        f"main.load_command([{command!r}]); print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = {name.split(".")[0] for name in json.loads(out)}
    assert f"keep.client.cli.{command}" in json.loads(out)
    assert not {"tarfile", "zipfile", "pathspec", "argon2", "difflib"} & loaded


@pytest.mark.parametrize(
    ("args", "module"),
    [
        (["backup", "/srv"], "backup"),
        (["--json", "restore", "latest", "--target", "/tmp/x"], "restore"),
        (["--ca-file", "/etc/ssl/ca.pem", "snapshots"], "listing"),
        (["snapshots", "--json"], "listing"),
        (["phonehome"], "checkin"),
        (["--help"], None),
        (["no-such-command"], None),
    ],
)
def test_the_program_loads_the_command_asked_for_before_it_runs(args: list[str], module: str | None) -> None:
    """`keep` imports the command's module with the collector off and
    freezes what the imports made, then runs the command with the collector
    on (docs/architecture.md); an argument that names no command loads none."""
    code = (
        "import gc, json, sys; import keep.client.cli.program as entry, keep.client.cli.main as m; "
        "before = set(sys.modules); "
        "m.main = lambda: print(json.dumps([gc.isenabled(), gc.get_freeze_count() > 0, "
        "sorted(k for k in set(sys.modules) - before if k.startswith('keep.client.cli.'))])); "
        f"sys.argv = ['keep', *{args!r}]; entry.main()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    enabled, frozen, loaded = json.loads(out)
    assert enabled
    assert frozen
    commands = {f"keep.client.cli.{m}" for m in (*COMMANDS.values(), *OLD_NAMES.values())}
    assert [m for m in loaded if m in commands] == ([f"keep.client.cli.{module}"] if module else [])


def test_a_command_that_fails_to_load_is_one_line_not_a_traceback() -> None:
    """A broken install (the command's module cannot be imported) is said
    in one line with exit code 1, as before the program loaded it early."""
    code = (
        "import sys; sys.modules['keep.client.cli.backup'] = None; "
        "import keep.client.cli.program as entry; sys.argv = ['keep', 'backup', '/srv']; entry.main()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 1
    assert out.stderr.startswith("keep: internal error (ModuleNotFoundError")
    assert "Traceback" not in out.stderr
