"""The one verdict the status page leads with — backups healthy, needing
attention, or failing — with each reason and the action that fixes it
(pure: plain facts in, a verdict out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HEALTHY, ATTENTION, FAILING = "healthy", "needs attention", "failing"
STALE_AFTER = 2 * 86400  # seconds without a successful backup (the timer runs daily)
DRILL_STALE_AFTER = 35 * 86400  # a restore drill a month old no longer proves much
QUOTA_NEARLY_FULL = 0.9


@dataclass(frozen=True, slots=True)
class Facts:
    now: float
    last_backup: dict[str, Any] | None  # history.last_backup: time, result, error
    last_success: float | None  # time of the last backup that finished (ok or partial)
    last_drill: dict[str, Any] | None  # drill.last: time, ok
    sources_set: bool
    timer_active: bool
    stored_bytes: int | None = None  # None: the server could not be asked
    quota: int | None = None


@dataclass
class Verdict:
    level: str = HEALTHY
    reasons: list[tuple[str, str]] = field(default_factory=list)  # (what is wrong, what fixes it)

    def add(self, level: str, reason: str, action: str) -> None:
        if level == FAILING or (level == ATTENTION and self.level == HEALTHY):
            self.level = level
        self.reasons.append((reason, action))


def verdict(f: Facts) -> Verdict:
    v = Verdict()
    if not f.sources_set:
        v.add(
            FAILING,
            "no sources are set: backups have nothing to back up",
            "add [backup] sources to keep.toml",
        )
    last = f.last_backup
    if last is not None and last.get("result") == "failed":
        v.add(
            FAILING,
            f"the last backup failed: {last.get('error') or 'no reason recorded'}",
            "fix that, then back up now",
        )
    if f.last_success is None:
        v.add(ATTENTION, "no backup has finished on this device yet", "back up now")
    elif f.now - f.last_success > STALE_AFTER:
        days = int((f.now - f.last_success) // 86400)
        v.add(
            ATTENTION,
            f"no backup has finished for {days} days",
            "check the timer and the server, then back up now",
        )
    if last is not None and last.get("result") == "partial":
        v.add(ATTENTION, "the last backup could not read some files", "see Recent warnings below")
    drilled = f.last_drill
    if drilled is not None and not drilled.get("ok"):
        v.add(
            FAILING,
            "the last restore drill found files that differ from their backup",
            "run keep check --read-data",
        )
    elif drilled is None or f.now - float(drilled.get("time", 0)) > DRILL_STALE_AFTER:
        v.add(ATTENTION, "no restore drill in the last month", "run keep drill")
    if f.stored_bytes is None:
        v.add(ATTENTION, "the storage server could not be asked", "check the network and the server")
    elif f.quota and f.stored_bytes >= QUOTA_NEARLY_FULL * f.quota:
        v.add(
            ATTENTION,
            f"the storage quota is {100 * f.stored_bytes // f.quota}% used",
            "forget and prune old snapshots, or ask for more",
        )
    if not f.timer_active:
        v.add(
            ATTENTION, "backups are not scheduled on this device", "install the timer: keep schedule install"
        )
    return v
