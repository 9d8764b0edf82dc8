"""keep.server: the operator's side — `keep-server` (this package's modules
and `storage/`), `keep-checkin` (`checkin/`) and what both use (`shared/`).
Neither ever sees a plaintext byte, a file name or a password."""

from __future__ import annotations


def main() -> None:
    """The `keep-server` command (one line naming the extra if it is missing)."""
    from keep.server.shared.starting import main_or_extra

    main_or_extra("keep-server", "keep.server.cli", "server", "prometheus_client")
