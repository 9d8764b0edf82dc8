"""A failed restore never damages what the target already holds: when the
server answers 404 for a pack, cuts the connection mid-reply, or the disk
fills up, every file of the target is either exactly as it was or exactly
the snapshot's version; no temporary file is left; the message names the
files not restored and why."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.client.conftest import Device
from tests.client.test_faults import random_tree
from tests.client.tmpfs import tmpfs
from tests.reliability.test_hostile_proxy import set_up

OLD = b"the copy the owner already had\n"


def restored(target: Path, source: Path) -> Path:
    return target / str(source).lstrip("/")


def older_copies(target: Path, src: Path) -> Path:
    out = restored(target, src)
    out.mkdir(parents=True)
    for f in src.iterdir():
        (out / f.name).write_bytes(OLD + f.name.encode())
        os.chmod(out / f.name, 0o644)
    return out


def assert_untouched_or_restored(out: Path, src: Path) -> list[str]:
    """Each file holds its old copy or exactly the source; no temporaries.
    Returns the names still holding the old copy."""
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in src.iterdir())
    old = []
    for f in src.iterdir():
        data = (out / f.name).read_bytes()
        if data == OLD + f.name.encode():
            old.append(f.name)
            assert (out / f.name).stat().st_mode & 0o777 == 0o644
        else:
            assert data == f.read_bytes(), f.name
    return old


@pytest.mark.parametrize("attack", ["pack_404", "cut"])
def test_a_pack_the_server_withholds_leaves_the_old_files_alone(
    tamper: tuple[str, dict[str, Any]], device: Device, tmp_path: Path, attack: str
) -> None:
    dev, src, snapshot = set_up(tamper, device, tmp_path)
    target = tmp_path / "restore"
    out = older_copies(target, src)
    tamper[1][attack] = True
    result = dev.run("restore", snapshot, "--target", str(target), check=False)
    tamper[1].clear()
    assert result.returncode == (1 if attack == "pack_404" else 12), result.stderr
    assert "Traceback" not in result.stderr
    old = assert_untouched_or_restored(out, src)
    assert old  # the attack did stop something
    said = result.stdout + result.stderr
    reason = "the server has no pack" if attack == "pack_404" else "cannot reach the server"
    for name in old:  # each named, with the reason
        path = f"{str(src).lstrip('/')}/{name}"
        assert f"{path}: not restored: {reason}" in said or f"not restored: {path}" in said
    assert reason in said
    dev.run("restore", snapshot, "--target", str(target))  # and a clean retry completes
    assert assert_untouched_or_restored(out, src) == []


@pytest.fixture
def small_target(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB tmpfs as the restore target."""
    with tmpfs(tmp_path / "small", "6m") as mount:
        yield mount


def test_a_full_disk_leaves_the_old_files_alone_and_says_what_is_needed(
    device: Device, tmp_path: Path, small_target: Path
) -> None:
    src = random_tree(tmp_path / "src", 4, 3 << 20)  # 12 MiB into 6 MiB
    device.init()
    device.run("backup", str(src))
    out = older_copies(small_target, src)
    result = device.run("restore", "latest", "--target", str(small_target), check=False)
    assert result.returncode == 1, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert "the disk is full writing " in error
    assert "more bytes are needed" in error
    old = assert_untouched_or_restored(out, src)
    assert old
    for name in old:
        assert f"not restored: {str(src).lstrip('/')}/{name}" in result.stderr
