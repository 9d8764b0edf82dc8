"""`keep completion SHELL`: the shell's completion script, from click's own
completion support (the script calls `keep` back with `_KEEP_COMPLETE` set)."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from keep.client.cli.main import cli

SHELLS = ("bash", "zsh", "fish")


@cli.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    \b
    bash: keep completion bash > /etc/bash_completion.d/keep
    zsh:  keep completion zsh > "${fpath[1]}/_keep"
    fish: keep completion fish > ~/.config/fish/completions/keep.fish
    """
    completer = get_completion_class(shell)
    if completer is None:  # click ships all three
        raise click.UsageError(f"no completion for {shell}")
    click.echo(completer(cli, {}, "keep", "_KEEP_COMPLETE").source())
