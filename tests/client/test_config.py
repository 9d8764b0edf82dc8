"""keep.toml: what it accepts, and the one-line errors for what it does not."""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from keep.client.device.config import TABLES, Config, ConfigError, load_config
from keep.protocol.compression import DATA_LEVEL


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keep.toml"
    path.write_text(text)
    return path


def test_a_missing_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path / "absent.toml") == Config()
    assert Config().backup.compression == DATA_LEVEL == 1


def test_backup_settings_are_read(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            '[backup]\nsources = ["/srv"]\nexcludes = ["*.tmp"]\none_file_system = true\ncompression = 19\n',
        )
    )
    assert config.backup.sources == ("/srv",)
    assert config.backup.excludes == ("*.tmp",)
    assert config.backup.one_file_system is True
    assert config.backup.compression == 19


@pytest.mark.parametrize("value", ["0", "20", "-1", '"fast"', "3.0", "true"])
def test_compression_outside_the_zstd_levels_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="compression"):
        load_config(write(tmp_path, f"[backup]\ncompression = {value}\n"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[backup]\nsources = "/srv"\n', "\\[backup\\] sources must be a list of strings"),
        ("[backup]\nsources = [1]\n", "must be a list of strings"),
        (
            "[retention]\nkeep_dayly = 3\n",
            "unknown setting 'keep_dayly' in \\[retention\\] \\(did you mean 'keep_daily'\\?\\)",
        ),
        ("[retention]\nkeep_daily = -1\n", "must not be negative"),
        ("[retention]\nkeep_daily = 1.5\n", "keep_daily must be a whole number, not 1.5"),
        ("[backup\n", "cannot read"),
        # the two slips the issue reported: both used to be ignored in silence
        (
            '[backup]\nexclude = ["*.tmp"]\n',
            "unknown setting 'exclude' in \\[backup\\] \\(did you mean 'excludes'\\?\\)",
        ),
        ('[checkin]\nddns = "false"\n', "\\[checkin\\] ddns must be true or false, not 'false'"),
        ("[checkin]\nddns = 0\n", "ddns must be true or false"),
        (
            "[phonehome]\nddns = true\n[checkin]\n",
            "\\[phonehome\\] is the old name of \\[checkin\\]; keep only",
        ),
        ("[server]\nurl = 8080\n", "\\[server\\] url must be a string"),
        (
            '[checkin]\nurl = "http://checkin.example.net"\n',
            "\\[checkin\\] url: refusing plain http to checkin",
        ),
        (
            '[checkin]\nurl = "ftp://checkin.example.net"\n',
            "\\[checkin\\] url: the check-in service URL must be http:// or https://",
        ),
        ("[backups]\nsources = []\n", "unknown table \\[backups\\] \\(did you mean 'backup'\\?\\)"),
        ("backup = 3\n", "\\[backup\\] must be a table"),
        (
            '[backup]\nexcludes = ["*.tmp", "!"]\n',
            "\\[backup\\] excludes: not a pattern git's rules can read",
        ),
        (
            '[backup]\nschedule = "daily\\nExecStartPre=/bin/sh"\n',
            "\\[backup\\] schedule must be one OnCalendar",
        ),
        ('[server]\nurl = "x"\nfrobnicate = 1\n', "unknown setting 'frobnicate' in \\[server\\]$"),
    ],
)
def test_wrong_settings_name_the_file_and_the_setting(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(write(tmp_path, text))
    assert str(tmp_path / "keep.toml") in str(caught.value)


def test_every_documented_setting_is_accepted(tmp_path: Path) -> None:
    """The keep.toml shown in docs/cli.md is the full list of settings: every
    key in it loads, and every key the loader knows is in it."""
    docs = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    example = docs.split("`keep.toml`", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    config = load_config(write(tmp_path, example))
    assert config.retention.keep_daily == 7
    assert config.checkin.update_root == "/etc/keep/update-root.json"
    documented = {(t, k) for t, table in tomllib.loads(example).items() for k in table}
    known = {(t, f.name) for t, cls in TABLES.items() for f in fields(cls)}
    assert documented == known
