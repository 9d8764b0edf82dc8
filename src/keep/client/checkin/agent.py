"""The device's check-in with keep-checkin: its settings, the switches and
the record of what each run did. The two check-ins themselves are in
`ddns.py` (the DNS pointer) and `updates.py` (the signed update check).

Each is switched by `[checkin] ddns` / `updates` in keep.toml (both on by
default). Switched off means no connection at all for it; the one exception
is switching DDNS off, which asks the service once to delete the record.

What each run did is kept in `$KEEP_HOME/checkin.json` (0600; it holds the
DDNS token) for `keep checkin status` and the admin page.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keep.client.device.config import CheckinSettings, update_config
from keep.client.device.state import read_record, write_private
from keep.client.transport import USER_AGENT, Transport

STATE_FILE = "checkin.json"
OLD_STATE_FILE = "phonehome.json"  # its name before 0.2, taken over on first use
DEFAULT_ROOT = Path("/etc/keep/update-root.json")
TIMEOUT = 30  # seconds without progress on a check-in connection
TOKEN = re.compile(rb"(?im)^(authorization: *bearer +)\S+")
SWITCHES = {"ddns": "DNS pointer updates", "updates": "Update checks"}
FAILED = ("error", "stopped", "REFUSED")  # how a failed attempt's result starts
DAYS_KEPT = 90  # of attempt tallies


def set_switches(config_file: Path, keys: list[str], value: bool) -> None:
    """Set `[checkin] KEY = value` in keep.toml for each switch in `keys`."""
    for key in keys:
        if key not in SWITCHES:
            raise ValueError(f"unknown switch {key!r}")
    update_config(config_file, "checkin", dict.fromkeys(keys, value))


@dataclass(frozen=True)
class Settings:
    url: str | None
    ddns: bool
    updates: bool
    name: str | None
    update_root: Path
    ca_file: str | None = None

    @classmethod
    def from_config(cls, table: CheckinSettings, ca_file: str | None = None) -> Settings:
        return cls(
            url=table.url.rstrip("/") if table.url else None,
            ddns=table.ddns,
            updates=table.updates,
            name=table.name.lower() if table.name else None,
            update_root=Path(table.update_root) if table.update_root else DEFAULT_ROOT,
            ca_file=ca_file,
        )


def transport(settings: Settings, s: dict[str, Any]) -> Transport:
    """The connection to keep-checkin, made like every other of the device's
    (transport.py): TLS against the configured CA file, plain http only to
    this machine, no proxy, the fixed User-Agent. The last request it sends
    is kept in `s` (this check-in's state) as it went out — request line,
    headers and body — with the device's token blanked, for `keep checkin
    status` and the admin page."""
    if settings.url is None:
        raise ValueError("no [checkin] url")

    def sent(raw: bytes) -> None:
        s["last_request"] = TOKEN.sub(rb"\1(this device's token, not shown)", raw).decode("latin-1")

    return Transport(
        settings.url, ca_file=settings.ca_file, service="check-in service", timeout=TIMEOUT, record=sent
    )


def request_lines(s: dict[str, Any]) -> list[str]:
    """The last request a check-in sent (`s` its state), line by line for
    people; no lines if it has sent none."""
    sent = s.get("last_request")
    return str(sent).replace("\r\n", "\n").rstrip("\n").split("\n") if sent else []


def load_state(home: Path) -> dict[str, Any]:
    old = home / OLD_STATE_FILE
    if old.exists() and not (home / STATE_FILE).exists():
        old.rename(home / STATE_FILE)  # keeps the DDNS token: the name stays this device's
    state = read_record(home / STATE_FILE)
    return state if state is not None else {"ddns": {}, "updates": {}}


def save_state(home: Path, state: dict[str, Any]) -> None:
    write_private(home / STATE_FILE, json.dumps(state, indent=1).encode())


def record(s: dict[str, Any], now: float, result: str, attempt: bool = True) -> str:
    """Keep a run's result; an attempt (a connection was tried) also counts
    in its day's tally of good and failed attempts, for the admin page."""
    if attempt:
        s["last_attempt"] = now
        days = s.setdefault("days", {})
        tally = days.setdefault(time.strftime("%Y-%m-%d", time.localtime(now)), {"ok": 0, "failed": 0})
        tally["failed" if result.startswith(FAILED) else "ok"] += 1
        for day in sorted(days)[:-DAYS_KEPT]:
            del days[day]
    s["result"] = result
    return result


def attempts_by_day(state: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Day (YYYY-MM-DD, local) -> good and failed check-in attempts, both check-ins together."""
    out: dict[str, dict[str, int]] = {}
    for key in SWITCHES:
        for day, tally in state.get(key, {}).get("days", {}).items():
            total = out.setdefault(day, {"ok": 0, "failed": 0})
            for outcome in total:
                total[outcome] += int(tally.get(outcome, 0))
    return dict(sorted(out.items()))


def what_is_sent(settings: Settings) -> dict[str, str]:
    """For `keep checkin status` and the admin page: fields and destination."""
    where = settings.url or "(no [checkin] url set)"
    return {
        "ddns": f"to {where}: the name {settings.name or '(unset)'}, this device's token (hidden), and the "
        "address the connection comes from; nothing else",
        "updates": f"to {where}/updates/: plain downloads of signed metadata and latest.json; no device id, "
        f"no token, no query string, User-Agent '{USER_AGENT}'",
    }
