"""Where `keep` keeps things, and its configuration file.

State (`$KEEP_HOME`): `/var/lib/keep` as root, else `$XDG_DATA_HOME/keep`
(`~/.local/share/keep`). Config (`$KEEP_CONFIG`): `/etc/keep/keep.toml` as root,
else `$XDG_CONFIG_HOME/keep/keep.toml`. A missing config file means defaults.

    [server]
    url = "https://backup.example.net"
    account = "alice"
    ca_file = "/etc/keep/ca.pem"     # optional

    [backup]
    sources = ["/srv", "/etc"]
    excludes = ["*.tmp", "/srv/cache"]
    exclude_caches = true
    one_file_system = false
    compression = 1                  # zstd level of file data, 1 (fastest) to 19
    schedule = "daily"               # systemd OnCalendar= for `keep schedule install`

    [retention]                      # defaults for `keep forget`
    keep_daily = 7
    keep_weekly = 5
    keep_monthly = 12
    keep_within = "2d"
    keep_tag = ["important"]

    [phonehome]
    ddns = true
    updates = true
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keep.protocol.compression import DATA_LEVEL, LEVEL_MAX, LEVEL_MIN
from keep.protocol.errors import ExitCode, KeepError


class ConfigError(KeepError):
    """Raised when keep.toml cannot be read or has wrong types."""

    exit_code = ExitCode.USAGE


def state_dir() -> Path:
    if env := os.environ.get("KEEP_HOME"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/keep")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "keep"


def config_path() -> Path:
    if env := os.environ.get("KEEP_CONFIG"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/etc/keep/keep.toml")
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "keep" / "keep.toml"


@dataclass(frozen=True, slots=True)
class Config:
    server_url: str | None = None
    account: str | None = None
    ca_file: str | None = None
    sources: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    exclude_caches: bool = False
    one_file_system: bool = False
    compression: int = DATA_LEVEL
    schedule: str = "daily"
    retention: dict[str, Any] = field(default_factory=dict)
    phonehome: dict[str, Any] = field(default_factory=dict)


RETENTION_COUNTS = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")


def _typed(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = table.get(key)
    if value is not None and not isinstance(value, kind):
        raise ConfigError(f"{where}: '{key}' must be a {kind.__name__}")
    return value


def load_config(path: Path | None = None) -> Config:
    path = path or config_path()
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return Config()
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    where = str(path)
    server = raw.get("server", {})
    backup = raw.get("backup", {})
    sources = _typed(backup, "sources", list, where) or []
    excludes = _typed(backup, "excludes", list, where) or []
    if not all(isinstance(s, str) for s in [*sources, *excludes]):
        raise ConfigError(f"{where}: sources and excludes are lists of strings")
    compression = _typed(backup, "compression", int, where)
    if compression is not None and (
        isinstance(compression, bool) or not LEVEL_MIN <= compression <= LEVEL_MAX
    ):
        raise ConfigError(f"{where}: 'compression' is a zstd level from {LEVEL_MIN} to {LEVEL_MAX}")
    retention = raw.get("retention", {})
    unknown = set(retention) - {*RETENTION_COUNTS, "keep_within", "keep_tag"}
    if unknown:
        raise ConfigError(f"{where}: unknown [retention] setting {sorted(unknown)[0]!r}")
    for key in RETENTION_COUNTS:
        if (_typed(retention, key, int, where) or 0) < 0:
            raise ConfigError(f"{where}: '{key}' must not be negative")
    _typed(retention, "keep_within", str, where)
    if not all(isinstance(t, str) for t in _typed(retention, "keep_tag", list, where) or []):
        raise ConfigError(f"{where}: keep_tag is a list of strings")
    return Config(
        server_url=_typed(server, "url", str, where),
        account=_typed(server, "account", str, where),
        ca_file=_typed(server, "ca_file", str, where),
        sources=tuple(sources),
        excludes=tuple(excludes),
        exclude_caches=bool(_typed(backup, "exclude_caches", bool, where)),
        one_file_system=bool(_typed(backup, "one_file_system", bool, where)),
        compression=DATA_LEVEL if compression is None else compression,
        schedule=_typed(backup, "schedule", str, where) or "daily",
        retention=dict(retention),
        phonehome=dict(raw.get("phonehome", {})),
    )
