"""keep.toml: what it accepts, and the one-line errors for what it does not."""

from __future__ import annotations

from pathlib import Path

import pytest
from keep.client.config import Config, ConfigError, load_config
from keep.protocol.compression import DATA_LEVEL


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keep.toml"
    path.write_text(text)
    return path


def test_a_missing_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path / "absent.toml") == Config()
    assert Config().compression == DATA_LEVEL == 1


def test_backup_settings_are_read(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            '[backup]\nsources = ["/srv"]\nexcludes = ["*.tmp"]\none_file_system = true\ncompression = 19\n',
        )
    )
    assert config.sources == ("/srv",)
    assert config.excludes == ("*.tmp",)
    assert config.one_file_system is True
    assert config.compression == 19


@pytest.mark.parametrize("value", ["0", "20", "-1", '"fast"', "3.0", "true"])
def test_compression_outside_the_zstd_levels_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="compression"):
        load_config(write(tmp_path, f"[backup]\ncompression = {value}\n"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[backup]\nsources = "/srv"\n', "'sources' must be a list"),
        ("[backup]\nsources = [1]\n", "lists of strings"),
        ("[retention]\nkeep_dayly = 3\n", "unknown \\[retention\\] setting 'keep_dayly'"),
        ("[retention]\nkeep_daily = -1\n", "must not be negative"),
        ("[backup\n", "cannot read"),
    ],
)
def test_wrong_settings_name_the_file_and_the_setting(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(write(tmp_path, text))
    assert str(tmp_path / "keep.toml") in str(caught.value)
