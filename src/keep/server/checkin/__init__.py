"""keep-checkin: the device's DNS pointer and signed update metadata.

A separate service with its own registry; it never talks to keep-server.
"""

from __future__ import annotations


def main() -> None:
    """The `keep-checkin` command (one line naming the extra if it is missing)."""
    from keep.server.shared.starting import main_or_extra

    main_or_extra("keep-checkin", "keep.server.checkin.cli", "checkin", "dns")
