"""The device's systemd units, as templates shipped in the package
(`keep/client/device/systemd/`, package data in the sdist and the wheel).

A template names what differs per installation as `@name@` — `@keep@`, the
`keep` executable, and `@schedule@`, the backup timer's OnCalendar
expression. `render` fills exactly those and refuses any other (or a value
that would add a line), so a unit is never written half-filled.
"""

from __future__ import annotations

import re
from importlib.resources import files

from keep.protocol.errors import ExitCode, KeepError

UNITS = (
    "keep-backup.service",
    "keep-backup.timer",
    "keep-checkin-agent.service",
    "keep-checkin-agent.timer",
    "keep-admin.service",
    "keep-notify@.service",
    "keep-schedule.path",
    "keep-schedule.service",
)
TIMERS = ("keep-backup.timer", "keep-checkin-agent.timer")
ENABLED = (*TIMERS, "keep-schedule.path")  # what install enables: the timers, and following keep.toml
SYSUSERS = "keep.sysusers.conf"
PLACEHOLDER = re.compile(r"@([a-z_]+)@")


class UnitTemplateError(KeepError):
    exit_code = ExitCode.USAGE


def template(name: str) -> str:
    return files("keep.client.device").joinpath("systemd", name).read_text()


def render(name: str, *, keep: str, schedule: str) -> str:
    """The unit `name` for this installation: every placeholder filled."""
    values = {"keep": keep, "schedule": schedule}
    for key, value in values.items():
        if not value or any(c in value for c in "\n\r"):
            raise UnitTemplateError(f"the units' @{key}@ must be one non-empty line, not {value!r}")

    def fill(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise UnitTemplateError(f"{name}: unknown placeholder {match.group(0)}")
        return values[match.group(1)]

    return PLACEHOLDER.sub(fill, template(name))
