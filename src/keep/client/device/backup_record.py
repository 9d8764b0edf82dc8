"""The device's record of its backups: the last one in full
($KEEP_HOME/last-backup.json), written by `keep backup` whatever its
outcome; every one in brief ($KEEP_HOME/backup-history.json, the newest
HISTORY_MAX: when, result, duration, bytes added, source and stored size),
for the admin page's pictures; and the backup running now
($KEEP_HOME/backup-running.json, rewritten every few seconds while it runs).
The admin page and `keep stats` show them."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from keep.client.device.state import process_alive, read_record, write_private

LAST_BACKUP = "last-backup.json"
HISTORY = "backup-history.json"
HISTORY_MAX = 1000  # runs: a year of daily backups and then some, ≈ 150 KB
HISTORY_FIELDS = ("time", "result", "seconds", "bytes_added", "bytes_total", "stored_bytes")
RUNNING = "backup-running.json"
RUNNING_STALE = 30  # seconds: a record not rewritten for this long is from a process that died


def record_last_backup(home: Path, record: dict[str, Any]) -> None:
    """Record this run; `last_success` carries the time of the last run that
    finished (ok or with warnings) across failures."""
    done = record.get("result") in ("ok", "partial")
    previous = last_backup(home) or {}
    record = {**record, "last_success": record["time"] if done else previous.get("last_success")}
    brief = {key: record[key] for key in HISTORY_FIELDS if record.get(key) is not None}
    if record.get("error"):
        brief["error"] = str(record["error"])[:200]
    history = [*backup_history(home), brief][-HISTORY_MAX:]
    with contextlib.suppress(OSError):  # the backup's own result matters more than these notes
        write_private(home / LAST_BACKUP, json.dumps(record, default=str).encode())
        write_private(home / HISTORY, json.dumps(history, separators=(",", ":")).encode())


def last_backup(home: Path) -> dict[str, Any] | None:
    return read_record(home / LAST_BACKUP)


def backup_history(home: Path) -> list[dict[str, Any]]:
    """Every recorded run in brief, oldest first (a damaged file counts as
    none: the history is a picture, not a ledger)."""
    try:
        runs = json.loads((home / HISTORY).read_bytes())
    except (OSError, ValueError):
        return []
    if not isinstance(runs, list):
        return []
    return [r for r in runs if isinstance(r, dict) and isinstance(r.get("time"), int | float)]


def record_running(home: Path, record: dict[str, Any]) -> None:
    """What the backup running in this process has done so far."""
    with contextlib.suppress(OSError):
        write_private(home / RUNNING, json.dumps({**record, "pid": os.getpid(), "at": time.time()}).encode())


def clear_running(home: Path) -> None:
    with contextlib.suppress(OSError):
        (home / RUNNING).unlink(missing_ok=True)


def running_backup(home: Path, now: float | None = None) -> dict[str, Any] | None:
    """The running backup's last record, or None if none runs (no record, a
    stale one, or its process is gone)."""
    record = read_record(home / RUNNING)
    if record is None:
        return None
    fresh = (now or time.time()) - float(record.get("at", 0)) < RUNNING_STALE
    return record if fresh and process_alive(int(record.get("pid", 0))) else None
