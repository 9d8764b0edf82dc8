"""The command table that lets `keep` import only the command it runs."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys

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
