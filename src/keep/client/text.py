"""How values are shown: sizes, times (RFC 3339 for programs), and paths that
may not be UTF-8 or may contain control characters (a newline in a name must
not split a line)."""

from __future__ import annotations

import datetime

_CONTROL = {i: f"\\x{i:02x}" for i in range(32)} | {0x7F: "\\x7f", 0x0A: "\\n", 0x09: "\\t"}


def display_path(path: bytes) -> str:
    """Printable, unambiguous form of a raw path."""
    return path.decode("utf-8", "backslashreplace").translate(_CONTROL)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def local_time(ns: int) -> str:
    """A moment for people: local time to the second."""
    return datetime.datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")


def rfc3339(seconds: float | None = None, *, ns: int | None = None) -> str | None:
    """A moment for programs (every time in `--json` output): RFC 3339 with
    the local offset and as many fractional digits as the value has, e.g.
    2026-12-01T09:30:05.25+01:00. None stays None ("never")."""
    if ns is None:
        if seconds is None:
            return None
        ns = round(seconds * 1e9)
    whole, fraction = divmod(ns, 10**9)
    moment = datetime.datetime.fromtimestamp(whole).astimezone()
    digits = f".{fraction:09d}".rstrip("0") if fraction else ""
    offset = moment.strftime("%z")  # +0100
    return f"{moment:%Y-%m-%dT%H:%M:%S}{digits}{offset[:3]}:{offset[3:]}"
