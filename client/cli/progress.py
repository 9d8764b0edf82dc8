"""Progress lines on a terminal (stderr), nothing otherwise."""

from __future__ import annotations

import sys
import time

from keep.client.cli.text import human_bytes


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
