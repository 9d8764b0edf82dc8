"""The admin page's pictures: the geometry (pure), the records they are
drawn from, and the status page of a real device that backed up to a real
keep-server — inline SVG with a text alternative and a table, every colour
from the contrast-tested palette, nothing fetched from anywhere."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from keep.client.admin import charts
from keep.client.admin.charts import HEIGHT, LEFT, PLOT_H, PLOT_W, TOP
from keep.client.checkin import agent
from keep.client.device import backup_record
from tests.client.conftest import Device
from tests.client.test_admin import CSS, admin_of, contrast

NOW = time.mktime((2026, 12, 1, 12, 0, 0, 0, 0, -1))
DAY = 86400


def run(
    days_ago: float, result: str = "ok", seconds: float = 0, added: int = 0, total: int = 0
) -> dict[str, object]:
    record: dict[str, object] = {"time": NOW - days_ago * DAY, "result": result}
    if result == "failed":
        record["error"] = "the server is unreachable"
    else:
        record.update(seconds=seconds, bytes_added=added, bytes_total=total, stored_bytes=total // 2)
    return record


def inside_the_plot(bar: charts.Bar) -> bool:
    return (
        bar.x >= LEFT - 12
        and bar.x + bar.width <= LEFT + PLOT_W + 12
        and TOP <= bar.y <= bar.y + bar.height <= HEIGHT
    )


def test_backups_are_bars_as_high_as_they_took_long_and_failures_stand_out() -> None:
    history = [run(40, seconds=99), run(20, seconds=10), run(10, "partial", seconds=20), run(1, "failed")]
    chart = charts.backups(history, NOW, 30)
    assert [b.kind for b in chart.bars] == ["ok", "partial", "failed"]  # the run 40 days ago is off the chart
    ok, partial, failed = chart.bars
    assert partial.height == pytest.approx(2 * ok.height)  # 20 s vs 10 s
    assert failed.height == PLOT_H  # outlined and full height: not told by colour alone
    assert ok.x < partial.x < failed.x
    assert all(inside_the_plot(b) for b in chart.bars)
    assert "the server is unreachable" in failed.label
    assert [row[1] for row in chart.rows] == ["succeeded", "finished with warnings", "failed"]
    assert chart.description == "3 backups in the last 30 days, 1 failed; the longest took 20 s."
    assert len(charts.backups(history, NOW, 90).bars) == 4
    assert [t.anchor for t in chart.x_ticks][-2:] == ["middle", "end"]  # the last date is not cut off
    empty = charts.backups(history, NOW - 200 * DAY, 30)
    assert (empty.empty, empty.description) == (True, "No backup ran in the last 30 days.")


def test_repository_size_is_two_lines_of_finished_backups() -> None:
    history = [run(3, total=4 << 30), run(2, "failed"), run(1, total=6 << 30)]
    chart = charts.repository_size(history, NOW, 30)
    assert [line.kind for line in chart.lines] == ["stored", "source"]
    source = chart.lines[1].points
    assert len(source) == 2  # the failed run has no size
    assert source[0][1] > source[1][1]  # 6 GiB is drawn higher (smaller y) than 4 GiB
    assert chart.rows[-1] == (chart.rows[-1][0], "6.0 GiB", "3.0 GiB")
    assert chart.y_ticks[-1].label == "9.3 GiB"  # the axis ends on a round number of bytes above the data


def test_checkins_per_day_stack_failures_on_top() -> None:
    day = time.strftime("%Y-%m-%d", time.localtime(NOW - DAY))
    chart = charts.checkins({day: {"ok": 3, "failed": 1}, "2020-01-01": {"ok": 9, "failed": 0}}, NOW, 30)
    good, failed = chart.bars
    assert (good.kind, failed.kind) == ("ok", "failed")
    assert failed.y + failed.height == pytest.approx(good.y)  # on top of the good ones
    assert good.height == pytest.approx(3 * failed.height)
    assert chart.rows == [(day, "3", "1")]  # 2020 is long off the chart
    assert chart.description == "4 check-in attempts on 1 day, 1 failed."


def test_check_in_attempts_are_tallied_per_day_for_90_days() -> None:
    state: dict[str, dict[str, object]] = {"ddns": {}, "updates": {}}
    for day in range(100):
        agent.record(state["ddns"], NOW - day * DAY, "unchanged (192.0.2.1)")
    agent.record(state["updates"], NOW, "error: update service unreachable")
    agent.record(state["updates"], NOW, "off", attempt=False)  # no connection: not an attempt
    by_day = agent.attempts_by_day(state)
    assert len(by_day) == agent.DAYS_KEPT
    assert by_day[time.strftime("%Y-%m-%d", time.localtime(NOW))] == {"ok": 1, "failed": 1}


def test_the_backup_history_is_bounded_and_survives_damage(tmp_path: Path) -> None:
    for i in range(backup_record.HISTORY_MAX + 5):
        backup_record.record_last_backup(tmp_path, {"time": i, "result": "ok", "seconds": 1, "files_new": 3})
    history = backup_record.backup_history(tmp_path)
    assert len(history) == backup_record.HISTORY_MAX
    assert history[0]["time"] == 5
    assert "files_new" not in history[-1]  # in brief: what the pictures need
    (tmp_path / backup_record.HISTORY).write_text("{not json")
    assert backup_record.backup_history(tmp_path) == []
    backup_record.record_last_backup(tmp_path, {"time": 9, "result": "failed", "error": "x" * 500})
    assert backup_record.backup_history(tmp_path) == [{"time": 9, "result": "failed", "error": "x" * 200}]


def test_every_chart_colour_is_from_the_tested_palette() -> None:
    css = CSS.read_text()
    colours = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-f]{6})", css))
    used = set(re.findall(r"var\(--([a-z-]+)\)", " ".join(re.findall(r"\.(?:chart|key)[^{]*\{[^}]*\}", css))))
    assert used >= {"ok", "warn", "bad", "link", "fg", "muted"}
    for name in used - {"bg"}:
        assert contrast(colours[name], colours["bg"]) >= 4.5, name


async def test_the_status_page_draws_this_devices_history(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"a" * 100_000)
    device.init()
    device.run("backup", str(src))
    (src / "b.txt").write_bytes(b"b" * 50_000)
    device.run("backup", str(src))
    assert device.run("backup", check=False).returncode == 2  # nothing to back up: a failure
    history = backup_record.backup_history(device.home)
    assert [r["result"] for r in history] == ["ok", "ok", "failed"]
    assert history[1]["stored_bytes"] > 0  # asked of the server after the backup
    async with admin_of(device) as client:
        reply = await client.get("/")
        page = await reply.text()
        assert reply.headers["Content-Security-Policy"].startswith("default-src 'none'; style-src 'self';")
        svgs = re.findall(r"<svg .*?</svg>", page, re.S)
        assert len(svgs) == 2  # backups and size; no check-in attempt yet: said in words instead
        assert len(re.findall(r'<rect class="bar bar-ok"', svgs[0])) == 2
        assert len(re.findall(r'<rect class="bar bar-failed"', svgs[0])) == 1
        assert 'role="img" aria-labelledby="backups-30-title backups-30-desc"' in svgs[0]
        assert "3 backups in the last 30 days, 1 failed" in page
        assert len(re.findall(r'<g class="line line-(stored|source)">', svgs[1])) == 2
        assert len(re.findall(r"<circle ", svgs[1])) == 4  # a dot per backup: one point is still seen
        assert "No check-in attempt in the last 30 days" in page
        assert page.count("<details>") == 2
        assert "http://" not in "".join(svgs).replace("http://www.w3.org/2000/svg", "")  # nothing fetched
        assert '<a href="/?days=30" aria-current="page">' in page
        page = await (await client.get("/?days=90")).text()
        assert '<a href="/?days=90" aria-current="page">' in page
        assert "Backups, last 90 days" in page
        assert (
            "Backups, last 30 days" in await (await client.get("/?days=7")).text()
        )  # only the periods offered


def test_a_backup_record_is_valid_json_for_other_tools(device: Device, tmp_path: Path) -> None:
    """The history file is plain JSON, readable by anything (0600)."""
    device.init()
    device.run("backup", check=False)
    path = device.home / backup_record.HISTORY
    assert json.loads(path.read_text())[0]["result"] == "failed"
    assert path.stat().st_mode & 0o777 == 0o600
