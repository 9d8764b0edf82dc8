"""Live progress on a terminal (stderr), drawn with rich; nothing at all
when stderr is not a terminal (the timer's runs print only the summary).

The engine keeps plain counters (`BackupStats`, `RestoreStats`, ...); a
command gives `Progress` a function that reads them into a `Reading`, and a
thread of its own redraws twice a second — so a 5 GB file being compressed
still moves the line, and the engine never waits for the terminal. Counters
are read without a lock: a figure a moment old is fine on a progress line.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

REDRAW_EVERY = 0.5  # seconds


@dataclass(frozen=True, slots=True)
class Reading:
    bytes_done: int
    bytes_total: int | None  # None while unknown (the pre-scan is still counting)
    files_done: int | None = None
    files_total: int | None = None
    current: str = ""  # the file (or phase) being worked on


class Progress:
    """`enabled`: draw on the terminal. `report`: also hand each reading to
    this (a backup records it for the admin page), terminal or not."""

    def __init__(
        self,
        enabled: bool,
        title: str,
        read: Callable[[], Reading],
        report: Callable[[Reading], None] | None = None,
    ) -> None:
        self.enabled = enabled
        self.title = title
        self._read = read
        self._report = report
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._redraw, name="keep-progress", daemon=True)
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.enabled:
            self._bar = _rich_progress()
            self._bar.start()
            self._task = self._bar.add_task(self.title, total=None, files="", current="")
        if self.enabled or self._report is not None:
            self._update()
            self._thread.start()
        return self

    def retitle(self, title: str) -> None:
        self.title = title

    def _redraw(self) -> None:
        while not self._stop.wait(REDRAW_EVERY):
            self._update()

    def _update(self) -> None:
        r = self._read()
        if self._report is not None:
            self._report(r)
        if not self.enabled:
            return
        files = ""
        if r.files_done is not None:
            files = f"{r.files_done:,}" + (f"/{r.files_total:,} files" if r.files_total else " files")
        self._bar.update(
            self._task,
            description=self.title,
            completed=r.bytes_done,
            total=r.bytes_total,
            files=files,
            current=r.current,
        )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.enabled or self._report is not None:
            self._stop.set()
            self._thread.join()
        if self.enabled:
            self._bar.stop()  # transient: the line goes, the summary follows


def _rich_progress() -> Any:
    # Imported only on a terminal: a timer's `keep backup` never pays for it.
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.table import Column

    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(bar_width=20),
        TaskProgressColumn(),
        TextColumn("{task.fields[files]}", markup=False),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn(
            "{task.fields[current]}",
            markup=False,
            table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis", min_width=10),
        ),
        console=Console(stderr=True),
        transient=True,
        auto_refresh=True,
        refresh_per_second=4,
        expand=True,
    )
