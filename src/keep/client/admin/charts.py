"""The admin page's pictures, as geometry: which bars and lines to draw, in
the coordinates of an SVG viewBox, with the text alternative and the table a
screen reader gets instead. Pure: records and a clock in, `Chart` out; the
template `_chart.html` turns a `Chart` into inline SVG (no script, and every
colour is a class from admin.css's contrast-tested palette).

Colour is never the only difference: a failed backup is an outlined,
full-height bar (a good one is filled, as high as it took long), failed
check-ins sit outlined on top of the good ones, and the two size lines
differ in dash as well as colour.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from keep.client.text import human_bytes

WIDTH, HEIGHT = 640.0, 220.0  # the viewBox; the page scales it to the screen
LEFT, RIGHT, TOP, BOTTOM = 64.0, 12.0, 12.0, 32.0  # room for the axes' labels
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
DAY = 86400.0
PERIODS = (30, 90)  # days the page offers
X_LABELS = 5


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    kind: str  # ok | partial | failed: the CSS class, and what the legend says
    label: str  # the bar's own text (an SVG <title>)


@dataclass(frozen=True, slots=True)
class Line:
    points: tuple[tuple[float, float], ...]  # drawn as a polyline with a dot at each point
    kind: str  # stored | source
    label: str

    @property
    def path(self) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in self.points)


@dataclass(frozen=True, slots=True)
class Tick:
    at: float  # x for the time axis, y for the value axis
    label: str
    anchor: str = "middle"  # SVG text-anchor: the last date ends at the plot's edge


@dataclass(frozen=True, slots=True)
class Chart:
    key: str  # unique on the page: ids of the title and description
    title: str
    description: str  # the text alternative: what the picture shows, in words
    columns: tuple[str, ...]  # the table view
    rows: Sequence[tuple[str, ...]]
    bars: Sequence[Bar] = ()
    lines: Sequence[Line] = ()
    x_ticks: Sequence[Tick] = ()
    y_ticks: Sequence[Tick] = ()
    legend: tuple[tuple[str, str], ...] = ()  # (kind, words)

    @property
    def empty(self) -> bool:
        return not self.rows


def _x(t: float, start: float, days: int) -> float:
    return LEFT + (t - start) / (days * DAY) * PLOT_W


def _y(value: float, top: float) -> float:
    return TOP + PLOT_H - (value / top * PLOT_H if top > 0 else 0.0)


def _nice(value: float) -> float:
    """The smallest 1, 2 or 5 × 10ⁿ at or above `value` (an axis's top)."""
    if value <= 0:
        return 1.0
    step = 1.0
    while step * 10 <= value:
        step *= 10
    while step > value:
        step /= 10
    return next(m * step for m in (1, 2, 5, 10) if m * step >= value)


def _time_ticks(start: float, days: int) -> list[Tick]:
    moments = [start + i * days / (X_LABELS - 1) * DAY for i in range(X_LABELS)]
    return [
        Tick(
            _x(t, start, days),
            time.strftime("%d %b", time.localtime(t)),
            "end" if t == moments[-1] else "middle",
        )
        for t in moments
    ]


def _value_ticks(top: float, say: Any) -> list[Tick]:
    return [Tick(_y(top * i / 2, top), say(top * i / 2)) for i in range(3)]


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s".replace(".0 s", " s")
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" + ("" if n == 1 else "s")


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


RESULTS = {"ok": "succeeded", "partial": "finished with warnings", "failed": "failed"}


def backups(history: Sequence[Mapping[str, Any]], now: float, days: int) -> Chart:
    """Each backup of the last `days` days: when, how long, bytes added, result."""
    start = now - days * DAY
    runs = [r for r in history if start <= float(r["time"]) <= now]
    top = max(1.0, _nice(max((float(r.get("seconds") or 0) for r in runs), default=0.0)))
    width = max(2.0, min(12.0, PLOT_W / days * 0.6))
    bars, rows = [], []
    for r in runs:
        result = str(r.get("result", "failed"))
        result = result if result in RESULTS else "failed"
        seconds = float(r.get("seconds") or 0)
        added = human_bytes(int(r.get("bytes_added") or 0))
        words = f"{_when(float(r['time']))}: {RESULTS[result]}"
        if result == "failed":
            words += f" ({r['error']})" if r.get("error") else ""
            height = PLOT_H
        else:
            words += f" in {_duration(seconds)}, {added} added"
            height = max(1.0, seconds / top * PLOT_H)
        x = _x(float(r["time"]), start, days) - width / 2
        bars.append(Bar(x, TOP + PLOT_H - height, width, height, result, words))
        rows.append(
            (
                _when(float(r["time"])),
                RESULTS[result],
                "" if result == "failed" else _duration(seconds),
                "" if result == "failed" else added,
            )
        )
    failed = sum(1 for b in bars if b.kind == "failed")
    return Chart(
        key=f"backups-{days}",
        title=f"Backups, last {days} days",
        description=(
            f"{_count(len(runs), 'backup')} in the last {days} days, {failed} failed; "
            f"the longest took {_duration(max((float(r.get('seconds') or 0) for r in runs), default=0))}."
            if runs
            else f"No backup ran in the last {days} days."
        ),
        columns=("When", "Result", "Duration", "Added"),
        rows=rows,
        bars=bars,
        x_ticks=_time_ticks(start, days),
        y_ticks=_value_ticks(top, _duration),
        legend=(("ok", "succeeded (height: duration)"), ("partial", "with warnings"), ("failed", "failed")),
    )


def repository_size(history: Sequence[Mapping[str, Any]], now: float, days: int) -> Chart:
    """Stored on the server vs the backed-up source, after each backup."""
    start = now - days * DAY
    runs = [
        r
        for r in history
        if start <= float(r["time"]) <= now
        and r.get("result") != "failed"
        and r.get("bytes_total") is not None
    ]
    top = _nice(max((float(max(r.get("stored_bytes") or 0, r["bytes_total"])) for r in runs), default=0.0))
    lines = []
    for kind, key, words in (
        ("stored", "stored_bytes", "stored on the server"),
        ("source", "bytes_total", "source"),
    ):
        points = [(float(r["time"]), float(r[key])) for r in runs if r.get(key) is not None]
        if points:
            lines.append(Line(tuple((_x(t, start, days), _y(v, top)) for t, v in points), kind, words))
    rows = [
        (
            _when(float(r["time"])),
            human_bytes(int(r["bytes_total"])),
            human_bytes(int(r["stored_bytes"])) if r.get("stored_bytes") is not None else "unknown",
        )
        for r in runs
    ]
    last = runs[-1] if runs else None
    return Chart(
        key=f"size-{days}",
        title=f"Repository size, last {days} days",
        description=(
            f"After the last backup the source was {human_bytes(int(last['bytes_total']))} and the server "
            f"stored {human_bytes(int(last.get('stored_bytes') or 0))} (deduplicated, compressed, encrypted)."
            if last
            else f"No finished backup in the last {days} days."
        ),
        columns=("After the backup of", "Source", "Stored"),
        rows=rows,
        lines=lines,
        x_ticks=_time_ticks(start, days),
        y_ticks=_value_ticks(top, lambda v: human_bytes(int(v))),
        legend=(("stored", "stored on the server"), ("source", "source size (dashed)")),
    )


def checkins(by_day: Mapping[str, Mapping[str, int]], now: float, days: int) -> Chart:
    """Check-in attempts per day (DNS pointer and update check together)."""
    start = now - days * DAY
    first = time.strftime("%Y-%m-%d", time.localtime(start))
    shown = {d: t for d, t in by_day.items() if d >= first}
    top = max(2.0, _nice(max((t.get("ok", 0) + t.get("failed", 0) for t in shown.values()), default=0)))
    width = max(2.0, PLOT_W / days * 0.7)
    bars, rows = [], []
    for day, tally in shown.items():
        ok, failed = int(tally.get("ok", 0)), int(tally.get("failed", 0))
        noon = time.mktime(time.strptime(day + " 12", "%Y-%m-%d %H"))
        x = _x(noon, start, days) - width / 2
        ok_h, failed_h = ok / top * PLOT_H, failed / top * PLOT_H
        base = TOP + PLOT_H
        if ok:
            bars.append(Bar(x, base - ok_h, width, ok_h, "ok", f"{day}: {ok} good"))
        if failed:
            bars.append(Bar(x, base - ok_h - failed_h, width, failed_h, "failed", f"{day}: {failed} failed"))
        rows.append((day, str(ok), str(failed)))
    failures = sum(int(t.get("failed", 0)) for t in shown.values())
    attempts = failures + sum(int(t.get("ok", 0)) for t in shown.values())
    return Chart(
        key=f"checkins-{days}",
        title=f"Check-in attempts per day, last {days} days",
        description=(
            f"{_count(attempts, 'check-in attempt')} on {_count(len(shown), 'day')}, {failures} failed."
            if shown
            else f"No check-in attempt in the last {days} days (switched off, or not configured)."
        ),
        columns=("Day", "Good", "Failed"),
        rows=rows,
        bars=bars,
        x_ticks=_time_ticks(start, days),
        y_ticks=_value_ticks(top, lambda v: f"{v:.0f}"),
        legend=(("ok", "good"), ("failed", "failed (outlined)")),
    )
