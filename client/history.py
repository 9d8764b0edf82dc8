"""The device's record of its last backup ($KEEP_HOME/last-backup.json),
written by `keep backup` whatever its outcome and shown by the admin page."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from keep.client.device_state import read_record, write_private

LAST_BACKUP = "last-backup.json"


def record_last_backup(home: Path, record: dict[str, Any]) -> None:
    """Record this run; `last_success` carries the time of the last run that
    finished (ok or with warnings) across failures."""
    done = record.get("result") in ("ok", "partial")
    previous = last_backup(home) or {}
    record = {**record, "last_success": record["time"] if done else previous.get("last_success")}
    with contextlib.suppress(OSError):  # the backup's own result matters more than this note
        write_private(home / LAST_BACKUP, json.dumps(record, default=str).encode())


def last_backup(home: Path) -> dict[str, Any] | None:
    return read_record(home / LAST_BACKUP)
