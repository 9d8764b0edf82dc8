"""Changing history, the owner only: `keep tag` and `keep rewrite` against a
real keep-server. A re-tagged or rewritten snapshot keeps its time and is
signed by the owner, so its late arrival is not taken for a planted
snapshot — and a device credential cannot forge that signature."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

from keep.client.device.state import DeviceState
from keep.protocol.blob import blob_id
from tests.client.conftest import Device, device_repository
from tests.client.test_explore import deep_recursion  # noqa: F401 (autouse: 1,000 levels)
from tests.client.test_faults import restored
from tests.client.test_mount import deep_tree
from tests.client.tree_builder import describe, make_rich_tree

DAY_NS = 86400 * 10**9


def owner(device: Device) -> tuple[str, ...]:
    return ("--password-file", str(device.password_file))


def test_tags_change_and_the_snapshot_keeps_its_time(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_rich_tree(src)
    deep_tree(src)
    device.init()
    device.run("backup", str(src), "--tag", "daily")
    laptop = device.another(tmp_path / "laptop")
    before = device.json("snapshots")[0]
    assert laptop.json("snapshots")[0]["id"] == before["id"]  # the laptop saw the original
    done = device.json("tag", "latest", "--add", "keep-forever", "--remove", "daily", *owner(device))
    assert done[0]["original"] == before["id"]
    after = device.json("snapshots")
    assert len(after) == 1
    assert after[0]["id"] == done[0]["replacement"] != before["id"]
    assert after[0]["tags"] == ["keep-forever"]
    assert after[0]["time"] == before["time"]
    # The original was forgotten by the owner: no machine takes its absence for hiding.
    assert [s["id"] for s in laptop.json("snapshots")] == [after[0]["id"]]
    assert device.json("tag", "latest", "--set", "a", "--set", "b", *owner(device))[0]["replacement"]
    assert device.json("snapshots")[0]["tags"] == ["a", "b"]
    same = device.json("tag", "latest", "--add", "a", *owner(device))
    assert same[0]["replacement"] is None  # nothing changed: nothing written
    out = tmp_path / "out"
    device.run("restore", "latest", "--target", str(out))
    assert describe(restored(out, src)) == describe(src)  # the same content, every byte and metadata
    # A device credential alone cannot change history.
    refused = device.run("tag", "latest", "--add", "x", check=False)
    assert refused.returncode == 2
    assert "needs the owner" in refused.stderr


def test_only_the_owners_signature_vouches_for_an_old_time(device: Device, tmp_path: Path) -> None:
    """A snapshot that arrives days after its own time looks planted, and
    `forget` holds its group back; re-tagged by the owner it is vouched for.
    The same snapshot written with a made-up signature by a device is not."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a\n")
    device.init()
    device.run("backup", str(src))
    remote, repo = device_repository(device, tmp_path / "thief-cache")
    with remote:
        real = repo.snapshots()[0]
        old = dataclasses.replace(real.snapshot, time_ns=time.time_ns() - 3 * DAY_NS)
        planted = repo.save_snapshot(old)
        forged = repo.save_snapshot(
            dataclasses.replace(old, time_ns=old.time_ns - 1, signature=os.urandom(64))
        )
    held = device.run("--json", "forget", "--keep-last", "5", "--dry-run", *owner(device), check=False)
    assert held.returncode == 3
    assert json.loads(held.stdout)["held_back_groups"] == 1
    device.json("tag", planted, "--add", "vouched", *owner(device))
    still = device.run("--json", "forget", "--keep-last", "5", "--dry-run", *owner(device), check=False)
    assert still.returncode == 3  # the forged one is still there, still suspect
    device.run("forget", forged, *owner(device))
    clear = device.run("--json", "forget", "--keep-last", "5", "--dry-run", *owner(device), check=False)
    assert clear.returncode == 0, clear.stdout
    assert json.loads(clear.stdout)["held_back_groups"] == 0


def test_rewrite_leaves_out_a_secret_and_prune_takes_its_data(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_rich_tree(src)  # non-UTF-8 names, hard links, a sparse file, xattrs …
    deep_tree(src)  # … and 1,000 nested directories
    (src / "cache").mkdir()
    (src / "docs" / "keep.txt").write_text("keep me\n")
    secret = os.urandom(40_000)
    (src / "docs" / "id_rsa").write_bytes(secret)
    (src / "cache" / "big.bin").write_bytes(os.urandom(300_000))
    device.init()
    device.run("backup", str(src))
    original = device.json("snapshots")[0]

    kept = device.json("rewrite", "latest", "--exclude", "id_rsa", "--exclude", "cache/", *owner(device))
    assert kept[0]["removed"] == 2
    both = device.json("snapshots")
    assert len(both) == 2  # without --forget the original stays
    assert {s["time"] for s in both} == {original["time"]}
    device.run("forget", original["id"], *owner(device))

    out = tmp_path / "out"
    device.run("restore", "latest", "--target", str(out))
    expected = describe(src)
    for gone in (b"docs/id_rsa", b"cache", b"cache/big.bin"):
        expected.pop(gone)
    assert describe(restored(out, src)) == expected

    state = DeviceState.load(device.home)
    secret_id = blob_id(state.keys.id, secret)
    remote, repo = device_repository(device, tmp_path / "thief-cache")
    with remote:
        repo.load_index()
        assert secret_id in repo.index  # forgotten, but its data stays until a prune
    device.run("prune", "--repack-below", "1", *owner(device))  # every pack holding dead data is repacked
    remote, repo = device_repository(device, tmp_path / "again" / "thief-cache")
    with remote:
        repo.load_index()
        assert secret_id not in repo.index
        assert all(secret_id not in {e.blob_id for e in p.entries} for p in repo.packs.values())

    # --forget: rewritten and forgotten in one go; a rewrite that leaves nothing out writes nothing.
    device.run("backup", str(src))
    newest = device.json("snapshots")[-1]["id"]
    done = device.json("rewrite", newest, "--exclude", "id_rsa", "--forget", *owner(device))
    assert newest not in {s["id"] for s in device.json("snapshots")}
    nothing = device.json("rewrite", done[0]["replacement"], "--exclude", "no-such-name", *owner(device))
    assert nothing[0]["replacement"] is None
