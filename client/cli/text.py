"""How values are shown to people: sizes, and paths that may not be UTF-8 or
may contain control characters (a newline in a name must not split a line)."""

from __future__ import annotations

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
