"""Daily use says what happened: a missing source does not stop the others
from being backed up, and asking for paths that are not in a snapshot is an
error, not an empty success."""

from __future__ import annotations

from pathlib import Path

from tests.client.conftest import Device
from tests.client.tree_builder import describe


def test_a_missing_source_is_a_warning_and_the_rest_is_backed_up(device: Device, tmp_path: Path) -> None:
    present = tmp_path / "present"
    present.mkdir()
    (present / "a.txt").write_text("kept\n")
    missing = tmp_path / "gone"
    device.init()
    result = device.run("--json", "backup", str(present), str(missing), check=False)
    assert result.returncode == 3, result.stderr
    assert str(missing) in result.stdout
    target = tmp_path / "out"
    device.run("restore", "latest", "--target", str(target))
    assert describe(target / str(present).lstrip("/")) == describe(present)
    result = device.run("backup", str(missing), check=False)
    assert result.returncode != 0
    assert "no backup source exists" in result.stderr


def test_paths_that_match_nothing_are_an_error(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a\n")
    device.init()
    device.run("backup", str(src))
    for command in (
        ("ls", "latest", str(src / "missing")),
        ("restore", "latest", "--target", str(tmp_path / "out"), "--include", str(src / "missing")),
    ):
        result = device.run(*command, check=False)
        assert result.returncode == 1, (command, result.stderr)
        assert "nothing in snapshot" in result.stderr
