"""`keep copy` from an account on one keep-server into an account on
another (both real processes): every byte and piece of metadata arrives
re-encrypted under the target's keys, a second copy uploads only what is
new, a copy run again goes on where it stopped, and a wrong target password
changes nothing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.servers import keep_server
from tests.client.conftest import Device
from tests.client.test_explore import deep_recursion  # noqa: F401 (autouse: 1,000 levels)
from tests.client.test_faults import restored
from tests.client.test_mount import deep_tree
from tests.client.tree_builder import describe, make_rich_tree


def stored_bytes(device: Device) -> int:
    return int(device.json("stats")["stored_bytes"])


@pytest.fixture
def target(tmp_path: Path) -> Iterator[tuple[str, Device]]:
    """A second keep-server with its own account; (url, its device)."""
    with keep_server(tmp_path / "other-server") as (url, _):
        pw = tmp_path / "target-password"
        pw.write_text("another long target passphrase\n")
        (tmp_path / "target").mkdir()
        device = Device(url, tmp_path / "target" / "home", "movedhere", pw)
        device.init()
        yield url, device


def test_copy_moves_history_to_another_server(
    device: Device, target: tuple[str, Device], tmp_path: Path
) -> None:
    url, there = target
    src = tmp_path / "src"
    make_rich_tree(src)
    deep_tree(src)
    device.init()
    device.run("backup", str(src), "--tag", "first")
    first = describe(src)
    (src / "docs" / "readme.txt").write_text("changed\n")
    (src / "more.bin").write_bytes(os.urandom(200_000))
    source_before = stored_bytes(device)
    device.run("backup", str(src))
    source_grown = stored_bytes(device) - source_before
    second = describe(src)
    to = ("--to-server", url, "--to-account", "movedhere", "--to-password-file", str(there.password_file))

    # The first snapshot only, then all: the first is not copied twice (resumable).
    snaps = device.json("snapshots")
    one = device.json("copy", snaps[0]["id"], *to)
    assert [c["target"] is not None for c in one] == [True]
    before_second = stored_bytes(there)
    both = device.json("copy", *to)
    assert [c["target"] is None for c in both] == [True, False]
    grown = stored_bytes(there) - before_second
    # Only what is new went over: the target grew as the source did for the same change.
    assert grown <= source_grown * 1.1 + 65_536
    assert grown < stored_bytes(there) / 2
    copied = there.json("snapshots")
    assert [(s["time"], s["tags"], s["host"]) for s in copied] == [
        (s["time"], s["tags"], s["host"]) for s in snaps
    ]
    assert {s["id"] for s in copied}.isdisjoint({s["id"] for s in snaps})  # other keys, other ids
    for snap, expected in zip(copied, (first, second), strict=True):
        out = tmp_path / f"out-{snap['id'][:8]}"
        there.run("restore", snap["id"], "--target", str(out))
        assert describe(restored(out, src)) == expected
    assert device.json("copy", *to) == [
        {"source": s["id"], "target": None, "bytes_read": 0} for s in snaps
    ]  # all there: nothing read, nothing written
    # The copies are the target owner's: their late arrival does not make them suspect.
    kept = there.run("--json", "forget", "--keep-last", "5", "--dry-run", check=False)
    assert kept.returncode == 0, kept.stdout


def test_a_wrong_target_password_changes_nothing(
    device: Device, target: tuple[str, Device], tmp_path: Path
) -> None:
    url, there = target
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a")
    device.init()
    device.run("backup", str(src))
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password at all\n")
    before = stored_bytes(there)
    result = device.run(
        "copy", "--to-server", url, "--to-account", "movedhere", "--to-password-file", str(wrong), check=False
    )
    assert result.returncode == 10
    assert result.stderr.strip() == "keep: wrong password, or no such account ('movedhere')"
    assert there.json("snapshots") == []
    assert stored_bytes(there) == before
