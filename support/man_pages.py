"""Man pages generated from the `keep` command line (click-man): one page
per command and subcommand, `keep.1`, `keep-backup.1`, `keep-checkin-run.1`
…, with every option and its help text as `--help` shows them.

    python -m support.man_pages DIR      (or `make man`: DIR is build/man)

Install with `install -m 644 DIR/*.1 /usr/local/share/man/man1/` (docs/cli.md).
"""

from __future__ import annotations

import importlib
import sys
import warnings
from importlib.metadata import version
from pathlib import Path


def write(target: Path) -> list[Path]:
    """Every page, written into `target`; the paths written."""
    from click_man.core import write_man_pages

    from keep.client.cli.main import COMMANDS, cli

    for module in sorted(set(COMMANDS.values())):  # the commands register themselves on import
        importlib.import_module(f"keep.client.cli.{module}")
    target.mkdir(parents=True, exist_ok=True)
    before = set(target.glob("*.1"))
    with warnings.catch_warnings():  # click-man 0.6 calls a helper Click 8.2 deprecated (for 9.0)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="click_man")
        write_man_pages("keep", cli, version=version("keep-backup"), target_dir=str(target))
    return sorted(set(target.glob("*.1")) - before)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m support.man_pages DIR")
    written = write(Path(sys.argv[1]))
    print(f"{len(written)} man pages in {sys.argv[1]}")


if __name__ == "__main__":
    main()
