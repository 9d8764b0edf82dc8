"""Where `keep` keeps things, and its configuration file.

State (`$KEEP_HOME`): `/var/lib/keep` as root, else `$XDG_DATA_HOME/keep`
(`~/.local/share/keep`). Config (`$KEEP_CONFIG`): `/etc/keep/keep.toml` as root,
else `$XDG_CONFIG_HOME/keep/keep.toml`. A missing config file means defaults;
docs/cli.md shows every setting, and a test holds that list and this module's
dataclasses to each other.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from keep.protocol.compression import DATA_LEVEL, LEVEL_MAX, LEVEL_MIN
from keep.protocol.errors import ExitCode, KeepError


class ConfigError(KeepError):
    """Raised when keep.toml cannot be read, or names a setting that does not
    exist or gives one a value of the wrong type."""

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


# Each table of keep.toml is one frozen dataclass; its fields are the table's
# keys and their annotations the only types accepted. `load_config` checks
# every key against them, so a misspelt or mistyped setting is an error
# instead of a silent default.


@dataclass(frozen=True, slots=True)
class ServerSettings:
    url: str | None = None
    account: str | None = None
    ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class BackupSettings:
    sources: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    exclude_caches: bool = False
    one_file_system: bool = False
    compression: int = DATA_LEVEL
    schedule: str = "daily"


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    keep_last: int = 0
    keep_hourly: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    keep_within: str | None = None
    keep_tag: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CheckinSettings:
    url: str | None = None
    name: str | None = None
    ddns: bool = True
    updates: bool = True
    update_root: str | None = None


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerSettings = ServerSettings()
    backup: BackupSettings = BackupSettings()
    retention: RetentionSettings = RetentionSettings()
    checkin: CheckinSettings = CheckinSettings()

    # The settings read most often, by their old flat names.
    @property
    def server_url(self) -> str | None:
        return self.server.url

    @property
    def account(self) -> str | None:
        return self.server.account

    @property
    def ca_file(self) -> str | None:
        return self.server.ca_file


TABLES: dict[str, type] = {
    "server": ServerSettings,
    "backup": BackupSettings,
    "retention": RetentionSettings,
    "checkin": CheckinSettings,
}
# Tables read under their old names (before 0.2); written under the new one.
RENAMED_TABLES = {"phonehome": "checkin"}

_KINDS = {"str": (str, "a string"), "bool": (bool, "true or false"), "int": (int, "a whole number")}


def _near(name: str, choices: list[str]) -> str:
    import difflib  # only for a mistyped setting: not on every start

    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _value(where: str, key: str, annotation: str, value: Any) -> Any:
    """`value` checked against a field's annotation (as a string: `str | None`,
    `tuple[str, ...]`, `bool`, `int`); TOML's own types make this exact."""
    if annotation.startswith("tuple[str"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f'{where}: {key} must be a list of strings, like ["a", "b"]')
        return tuple(value)
    kind, described = _KINDS[annotation.split(" ", maxsplit=1)[0]]
    # bool is a subclass of int in Python, never in TOML: `compression = true` is wrong.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: {key} must be {described}, not {value!r}")
    return value


def _table(where: str, name: str, raw: Any) -> Any:
    cls = TABLES[name]
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [{name}] must be a table")
    known = {f.name: str(f.type) for f in fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown setting {key!r} in [{name}]{_near(key, list(known))}")
        values[key] = _value(where, f"[{name}] {key}", known[key], value)
    return cls(**values)


def _check(where: str, config: Config) -> None:
    if config.backup.excludes:
        from keep.client.engine.patterns import PatternError, Patterns  # pathspec: only when needed

        try:
            Patterns(config.backup.excludes)
        except PatternError as exc:
            raise ConfigError(f"{where}: [backup] excludes: {exc}") from None
    schedule = config.backup.schedule
    if not schedule.strip() or any(c in schedule for c in "\n\r"):
        raise ConfigError(f'{where}: [backup] schedule must be one OnCalendar= expression, like "daily"')
    if config.checkin.url is not None:
        from keep.client.transport import refusal  # ssl and http.client: only when needed

        refused = refusal(config.checkin.url.rstrip("/"), "check-in service")
        if refused:
            raise ConfigError(f"{where}: [checkin] url: {refused.removesuffix(', or --insecure-http')}")
    level = config.backup.compression
    if not LEVEL_MIN <= level <= LEVEL_MAX:
        raise ConfigError(f"{where}: [backup] compression is a zstd level from {LEVEL_MIN} to {LEVEL_MAX}")
    for f in fields(RetentionSettings):
        if f.name != "keep_within" and isinstance(n := getattr(config.retention, f.name), int) and n < 0:
            raise ConfigError(f"{where}: [retention] {f.name} must not be negative")


def load_config(path: Path | None = None) -> Config:
    """keep.toml, every key checked; a missing file means the defaults."""
    path = path or config_path()
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return Config()
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    where = str(path)
    for old, new in RENAMED_TABLES.items():
        if old in raw:
            if new in raw:
                raise ConfigError(f"{where}: [{old}] is the old name of [{new}]; keep only [{new}]")
            raw[new] = raw.pop(old)
    for name in raw:
        if name not in TABLES:
            raise ConfigError(f"{where}: unknown table [{name}]{_near(name, list(TABLES))}")
    config = Config(**{name: _table(where, name, table) for name, table in raw.items()})
    _check(where, config)
    return config


def update_config(path: Path, table: str, values: dict[str, Any]) -> None:
    """Set `[table] key = value` for each of `values` in keep.toml (see
    `update_tables`)."""
    update_tables(path, {table: values})


def update_tables(path: Path, tables: dict[str, dict[str, Any]]) -> None:
    """Set `[table] key = value` for every table and key given, all at once,
    keeping everything else (comments included) as the owner wrote it; a
    value of None removes the key. The result is checked like any keep.toml
    before it replaces the file, so no writer can leave a configuration the
    next run refuses — and a refused change changes nothing."""
    import tomlkit

    doc = tomlkit.parse(path.read_text()) if path.exists() else tomlkit.document()
    for table, values in tables.items():
        for old_name, new_name in RENAMED_TABLES.items():
            if new_name == table and old_name in doc and table not in doc:
                doc[table] = doc.pop(old_name)  # written under its new name from now on
        section = doc.get(table)
        if section is None:
            section = tomlkit.table()
            doc[table] = section
        for key, value in values.items():
            if value is None:
                section.pop(key, None)
            else:
                section[key] = list(value) if isinstance(value, tuple) else value
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(tomlkit.dumps(doc))
    try:
        load_config(tmp)
    except ConfigError:
        tmp.unlink()
        raise
    tmp.replace(path)
