"""A server (or a man in the middle) that hides the device's own latest
backup: every command that lists snapshots refuses with exit 15, because
the device remembers every snapshot it wrote, not only those it listed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.client.conftest import Device
from tests.reliability.test_hostile_proxy import set_up


@pytest.mark.parametrize("forget_cache", [False, True])
def test_the_latest_backup_cannot_be_hidden(
    tamper: tuple[str, dict[str, Any]], device: Device, tmp_path: Path, forget_cache: bool
) -> None:
    dev, src, first = set_up(tamper, device, tmp_path)
    (src / "f0.bin").write_bytes(b"a newer version")
    latest = dev.json("backup", str(src))["snapshot"]  # never listed by this machine
    if forget_cache:  # the cache is a cache: what the device wrote is remembered elsewhere
        for p in (dev.home / "cache").rglob("*"):
            if p.is_file():
                p.unlink()
    tamper[1]["hide_snapshot"] = latest
    for command in (
        ("snapshots",),
        ("restore", "latest", "--target", str(tmp_path / "r")),
        ("backup", str(src)),
        ("check",),
    ):
        result = dev.run(*command, check=False)
        assert result.returncode == 15, (command, result.stdout, result.stderr)
        assert latest[:12] in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("f0.bin"))
    tamper[1].clear()
    assert [s["id"] for s in dev.json("snapshots")] == [first, latest]
