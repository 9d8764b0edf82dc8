"""The status page's verdict: healthy, needs attention or failing, each
reason with the action that fixes it."""

from __future__ import annotations

from typing import Any

import pytest

from keep.client.admin.health import ATTENTION, FAILING, HEALTHY, Facts, verdict

NOW = 1_800_000_000.0
DAY = 86400.0


def facts(**changes: Any) -> Facts:
    base: dict[str, Any] = {
        "now": NOW,
        "last_backup": {"time": NOW - 3600, "result": "ok"},
        "last_success": NOW - 3600,
        "last_drill": {"time": NOW - 5 * DAY, "ok": True},
        "sources_set": True,
        "timer_active": True,
        "stored_bytes": 50,
        "quota": 100,
    }
    return Facts(**{**base, **changes})


def test_all_well_is_healthy_with_no_reasons() -> None:
    v = verdict(facts())
    assert (v.level, v.reasons) == (HEALTHY, [])


@pytest.mark.parametrize(
    ("changes", "level", "reason", "action"),
    [
        ({"sources_set": False}, FAILING, "no sources are set", "[backup] sources"),
        (
            {"last_backup": {"time": NOW, "result": "failed", "error": "server unreachable"}},
            FAILING,
            "the last backup failed: server unreachable",
            "back up now",
        ),
        ({"last_success": NOW - 4 * DAY}, ATTENTION, "no backup has finished for 4 days", "check the timer"),
        ({"last_success": None, "last_backup": None}, ATTENTION, "no backup has finished", "back up now"),
        ({"last_drill": {"time": NOW, "ok": False}}, FAILING, "restore drill found files", "keep check"),
        ({"last_drill": None}, ATTENTION, "no restore drill", "keep drill"),
        ({"last_drill": {"time": NOW - 40 * DAY, "ok": True}}, ATTENTION, "no restore drill", "keep drill"),
        ({"stored_bytes": 95}, ATTENTION, "quota is 95% used", "prune"),
        ({"stored_bytes": None}, ATTENTION, "could not be asked", "check the network"),
        ({"timer_active": False}, ATTENTION, "not scheduled", "keep schedule install"),
        (
            {"last_backup": {"time": NOW, "result": "partial"}},
            ATTENTION,
            "could not read some files",
            "warnings",
        ),
    ],
)
def test_each_problem_names_its_fix(changes: dict[str, Any], level: str, reason: str, action: str) -> None:
    v = verdict(facts(**changes))
    assert v.level == level
    ((said, fix),) = v.reasons
    assert reason in said
    assert action in fix


def test_failing_outranks_attention() -> None:
    v = verdict(facts(sources_set=False, timer_active=False))
    assert v.level == FAILING
    assert len(v.reasons) == 2
