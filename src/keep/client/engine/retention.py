"""Retention policy (pure): which snapshots `keep forget` keeps, and why.

Semantics follow restic's `forget`, which users of backup tools know:
snapshots are grouped by host and paths; within a group, newest first,
`--keep-last N` keeps the N newest; `--keep-hourly/daily/weekly/monthly/yearly N`
keep the newest snapshot of each of the last N distinct hours/days/ISO
weeks/months/years that have one; `--keep-within D` keeps everything within D
of the group's newest snapshot; `--keep-tag T` keeps snapshots tagged T. A
snapshot is kept if any rule keeps it. A policy that keeps nothing is refused
(forgetting everything is never the default).

Planted snapshots: a device credential can add a snapshot with any time in it,
e.g. far in the future, to push real history out of `--keep-last` or
`--keep-within`. The server records when each snapshot arrived; a snapshot
whose own time differs from its arrival by more than CLOCK_SKEW_MAX is
reported, and `forget` refuses to act on a group containing one unless told
to. A snapshot the owner wrote in place of another (`keep tag`, `keep
rewrite`) keeps the original's time and arrives later: it carries the
owner's signature, and only then is its time trusted (`vouched`).

No clock, no I/O: times come in, decisions go out.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from keep.protocol.errors import ExitCode, KeepError

CLOCK_SKEW_MAX = 24 * 3600  # seconds between a snapshot's own time and its arrival
NS = 1_000_000_000


class PolicyError(KeepError):
    """Raised for a retention policy that would keep nothing."""

    exit_code = ExitCode.USAGE


@dataclass(frozen=True, slots=True)
class SnapshotFacts:
    id: str
    time_ns: int
    host: str
    paths: tuple[bytes, ...]
    tags: tuple[str, ...]
    arrived: int  # server-recorded arrival, epoch seconds
    vouched: bool = False  # the owner signed it (tag, rewrite): its time is trusted


@dataclass(frozen=True, slots=True)
class Policy:
    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within_seconds: int = 0
    tags: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return not (
            self.last
            or self.hourly
            or self.daily
            or self.weekly
            or self.monthly
            or self.yearly
            or self.within_seconds
            or self.tags
        )


@dataclass
class Decision:
    keep: list[tuple[SnapshotFacts, list[str]]] = field(default_factory=list)  # with reasons
    remove: list[SnapshotFacts] = field(default_factory=list)
    suspicious: list[SnapshotFacts] = field(default_factory=list)  # time vs arrival disagree


def _utc(ns: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ns / NS, tz=datetime.UTC)


BUCKETS: dict[str, Callable[[datetime.datetime], tuple[int, ...]]] = {
    "hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: t.isocalendar()[:2],
    "monthly": lambda t: (t.year, t.month),
    "yearly": lambda t: (t.year,),
}


def group_key(s: SnapshotFacts) -> tuple[str, tuple[bytes, ...]]:
    return s.host, tuple(sorted(s.paths))


def decide(snapshots: Sequence[SnapshotFacts], policy: Policy) -> Decision:
    """Apply `policy` to every host+paths group of `snapshots`."""
    if policy.is_empty():
        raise PolicyError("the policy keeps nothing; give at least one --keep-* option")
    decision = Decision()
    decision.suspicious = [
        s for s in snapshots if not s.vouched and abs(s.time_ns // NS - s.arrived) > CLOCK_SKEW_MAX
    ]
    groups: dict[tuple[str, tuple[bytes, ...]], list[SnapshotFacts]] = {}
    for s in snapshots:
        groups.setdefault(group_key(s), []).append(s)
    for members in groups.values():
        newest_first = sorted(members, key=lambda s: (s.time_ns, s.id), reverse=True)
        reasons = _reasons(newest_first, policy)
        for s in newest_first:
            if reasons[s.id]:
                decision.keep.append((s, reasons[s.id]))
            else:
                decision.remove.append(s)
    return decision


def _reasons(newest_first: list[SnapshotFacts], policy: Policy) -> dict[str, list[str]]:
    """Why each snapshot of one group is kept (an empty list: it goes)."""
    reasons: dict[str, list[str]] = {s.id: [] for s in newest_first}
    for s in newest_first[: policy.last]:
        reasons[s.id].append("last")
    for name, bucket in BUCKETS.items():
        limit = getattr(policy, name)
        seen: set[tuple[int, ...]] = set()
        for s in newest_first:
            if len(seen) >= limit:
                break
            key = bucket(_utc(s.time_ns))
            if key not in seen:
                seen.add(key)
                reasons[s.id].append(name)
    if policy.within_seconds:
        cutoff = newest_first[0].time_ns - policy.within_seconds * NS
        for s in newest_first:
            if s.time_ns >= cutoff:
                reasons[s.id].append("within")
    for s in newest_first:
        if set(s.tags) & set(policy.tags):
            reasons[s.id].append("tag")
    return reasons


def parse_duration(text: str) -> int:
    """Seconds in a restic-style duration: `1y2m3w4d5h` (m = months of 30 days)."""
    units = {"y": 365 * 86400, "m": 30 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600}
    total, number = 0, ""
    for ch in text.strip():
        if ch.isdigit():
            number += ch
        elif ch in units and number:
            total += int(number) * units[ch]
            number = ""
        else:
            raise PolicyError(f"cannot read the duration {text!r} (use e.g. 2y6m, 30d, 12h)")
    if number or not total:
        raise PolicyError(f"cannot read the duration {text!r} (use e.g. 2y6m, 30d, 12h)")
    return total
