"""keep-checkin: the device's DNS pointer and signed update metadata.

A separate service with its own registry; it never talks to keep-server.
"""

from __future__ import annotations

import sys


def main() -> None:
    """The `keep-checkin` command: says in one line which extra a plain
    install lacks (dnspython) instead of a traceback."""
    try:
        from keep.server.checkin.cli import main as run
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "dns":
            raise
        sys.exit(
            "keep-checkin: the check-in service needs the 'checkin' extra: pip install 'keep-backup[checkin]'"
        )
    run()
