"""`PathWarning`: a problem with one path that did not stop the command
(a file vanished during backup, an entry could not be restored). Collected in
results as values, never printed by the engine; the CLI reports them and exits 3."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PathWarning:
    path: str
    message: str
