"""Progress lines on a terminal (stderr), nothing otherwise."""

from __future__ import annotations

import sys
import time


class ProgressLine:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.started = time.monotonic()

    def show(self, text: str) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[2K" + text)
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()

    def rate(self, nbytes: int) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return f"{human_bytes(nbytes / elapsed)}/s"


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
