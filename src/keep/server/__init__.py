"""keep.server: the operator's side — `keep-server` (this package's modules
and `storage/`), `keep-checkin` (`checkin/`) and what both use (`shared/`).
Neither ever sees a plaintext byte, a file name or a password."""

from __future__ import annotations

import sys


def main() -> None:
    """The `keep-server` command: says in one line which extra a plain
    install lacks (prometheus-client) instead of a traceback."""
    try:
        from keep.server.cli import main as run
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "prometheus_client":
            raise
        sys.exit(
            "keep-server: the storage server needs the 'server' extra: pip install 'keep-backup[server]'"
        )
    run()
