"""`keep completion bash|zsh|fish`: the script a shell sources, and the
answers `keep` gives it (real bash; zsh and fish by their scripts' calls)."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.client.conftest import KEEP


def complete(*words: str) -> list[str]:
    """What `keep` offers for the last of `words`, through the protocol the
    bash script speaks (COMP_WORDS / COMP_CWORD, answers as type,value lines)."""
    env = {
        **os.environ,
        "_KEEP_COMPLETE": "bash_complete",
        "COMP_WORDS": " ".join(("keep", *words)),
        "COMP_CWORD": str(len(words)),
    }
    out = subprocess.run([KEEP], env=env, capture_output=True, text=True, check=True).stdout
    return [line.split(",", 1)[1] for line in out.splitlines() if "," in line]


def test_bash_sources_the_script_and_completes_commands_options_and_choices() -> None:
    shown = subprocess.run(
        ["bash", "-c", f'source <("{KEEP}" completion bash) && complete -p keep'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "_keep_completion" in shown.stdout
    assert complete("res") == ["restore"]
    assert complete("device", "rev") == ["revoke"]
    assert "--overwrite" in complete("restore", "--over")
    assert complete("restore", "--overwrite", "") == ["always", "if-changed", "if-newer", "never"]
    assert complete("completion", "") == ["bash", "zsh", "fish"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_call_keep_back(shell: str) -> None:
    script = subprocess.run([KEEP, "completion", shell], capture_output=True, text=True, check=True).stdout
    assert f"_KEEP_COMPLETE={shell}_complete" in script.replace('"', "")


def test_an_unknown_shell_is_one_line() -> None:
    result = subprocess.run([KEEP, "completion", "tcsh"], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "'tcsh' is not one of 'bash', 'zsh', 'fish'" in result.stderr
