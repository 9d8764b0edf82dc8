"""Man pages are generated from the command line itself (support/man_pages.py,
click-man), so they cannot drift from `--help`: one per command and
subcommand, each rendered by man-db without a warning."""

from __future__ import annotations

import subprocess
from pathlib import Path

import click

from keep.client.cli.main import COMMANDS, OLD_NAMES, cli
from support.man_pages import write


def test_every_command_has_a_man_page_that_renders(tmp_path: Path) -> None:
    pages = write(tmp_path)
    names = {p.name for p in pages}
    expected = {"keep.1"}
    ctx = click.Context(cli, info_name="keep")
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None
        expected.add(f"keep-{name}.1")
        for sub, child in getattr(command, "commands", {}).items():
            if not child.hidden:
                expected.add(f"keep-{name}-{sub}.1")
    assert names == expected
    assert not any(f"keep-{old}.1" in names for old in OLD_NAMES)  # the hidden old names
    for page in pages:
        shown = subprocess.run(
            ["man", "--warnings", "-l", str(page)],
            capture_output=True,
            text=True,
            env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            check=True,
        )
        assert shown.stderr == "", (page.name, shown.stderr)
        assert "SYNOPSIS" in shown.stdout
    restore = subprocess.run(
        ["man", "-l", str(tmp_path / "keep-restore.1")],
        capture_output=True,
        text=True,
        env={"MANWIDTH": "200", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        check=True,
    ).stdout
    assert "--overwrite" in restore
    assert "--verify" in restore
