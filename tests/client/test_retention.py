"""Retention policies on synthetic snapshot sets (table-driven)."""

from __future__ import annotations

import datetime

import pytest

from keep.client.engine.retention import (
    CLOCK_SKEW_MAX,
    Policy,
    PolicyError,
    SnapshotFacts,
    decide,
    parse_duration,
)

NS = 1_000_000_000
BASE = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC)


def snap(
    sid: str, at: datetime.datetime, host: str = "nas", tags: tuple[str, ...] = (), arrived_delta: int = 0
) -> SnapshotFacts:
    ns = int(at.timestamp() * NS)
    return SnapshotFacts(sid, ns, host, (b"/srv",), tags, int(at.timestamp()) + arrived_delta)


def daily(n: int, host: str = "nas") -> list[SnapshotFacts]:
    """One snapshot a day at noon, `d0` the newest."""
    return [snap(f"{host}-d{i}", BASE - datetime.timedelta(days=i), host) for i in range(n)]


def kept(snapshots: list[SnapshotFacts], policy: Policy) -> list[str]:
    return sorted(s.id for s, _ in decide(snapshots, policy).keep)


CASES = [
    ("keep-last 3", daily(10), Policy(last=3), ["nas-d0", "nas-d1", "nas-d2"]),
    ("keep-daily 2", daily(10), Policy(daily=2), ["nas-d0", "nas-d1"]),
    (
        "keep-weekly 2 picks the newest of each ISO week",
        daily(14),
        Policy(weekly=2),
        ["nas-d0", "nas-d1"],
    ),  # 2026-11-23 is a Monday: d0 alone in its week, d1 (Sun) newest of the previous
    ("keep-monthly 1", daily(40), Policy(monthly=1), ["nas-d0"]),
    ("keep-yearly 5 with one year of data", daily(3), Policy(yearly=5), ["nas-d0"]),
    (
        "keep-within 2d keeps 3 noon snapshots",
        daily(10),
        Policy(within_seconds=2 * 86400),
        ["nas-d0", "nas-d1", "nas-d2"],
    ),
    ("rules combine by union", daily(10), Policy(last=1, within_seconds=86400), ["nas-d0", "nas-d1"]),
]


@pytest.mark.parametrize(("name", "snapshots", "policy", "expected"), CASES, ids=[c[0] for c in CASES])
def test_policies(name: str, snapshots: list[SnapshotFacts], policy: Policy, expected: list[str]) -> None:
    assert kept(snapshots, policy) == sorted(expected)
    decision = decide(snapshots, policy)
    assert len(decision.keep) + len(decision.remove) == len(snapshots)


def test_hourly_buckets_keep_the_newest_in_each_hour() -> None:
    snaps = [
        snap(f"s{i}", BASE - datetime.timedelta(minutes=20 * i)) for i in range(6)
    ]  # 12:00 back to 10:20
    assert kept(snaps, Policy(hourly=2)) == ["s0", "s1"]  # 12:00 (hour 12) and 11:40 (hour 11)


def test_groups_by_host_and_paths() -> None:
    snaps = daily(3, "nas") + daily(3, "laptop")
    assert kept(snaps, Policy(last=1)) == ["laptop-d0", "nas-d0"]


def test_keep_tag() -> None:
    snaps = daily(5)
    snaps[4] = snap("tagged", BASE - datetime.timedelta(days=4), tags=("before-upgrade",))
    assert kept(snaps, Policy(last=1, tags=("before-upgrade",))) == ["nas-d0", "tagged"]


def test_reasons_are_reported() -> None:
    decision = decide(daily(2), Policy(last=1, daily=2))
    reasons = {s.id: r for s, r in decision.keep}
    assert reasons == {"nas-d0": ["last", "daily"], "nas-d1": ["daily"]}


def test_a_policy_that_keeps_nothing_is_refused() -> None:
    with pytest.raises(PolicyError):
        decide(daily(3), Policy())


def test_planted_future_snapshot_is_reported() -> None:
    """A snapshot claiming to be from next year but uploaded today would push
    real history out of --keep-last; it is flagged by its arrival time."""
    snaps = daily(5)
    planted = snap("planted", BASE + datetime.timedelta(days=365), arrived_delta=-365 * 86400)
    decision = decide([*snaps, planted], Policy(last=1))
    assert [s.id for s in decision.suspicious] == ["planted"]
    assert abs(planted.time_ns // NS - planted.arrived) > CLOCK_SKEW_MAX


@pytest.mark.parametrize(
    ("text", "seconds"), [("1y", 365 * 86400), ("2m", 60 * 86400), ("1w2d", 9 * 86400), ("12h", 43200)]
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "d", "1x", "-1d", "1.5d"])
def test_parse_duration_refuses_nonsense(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_duration(text)
