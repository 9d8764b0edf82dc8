"""A thief holding only `device.json` (the device's token and keys) attacks
with append-only operations; the owner's routine commands must not lose
history because of what the thief wrote."""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from keep.client.device.state import DeviceState
from keep.client.engine.packer import Packer
from keep.client.engine.repository import Repository
from keep.client.remote import Remote
from keep.protocol.blob import BlobType, blob_id
from keep.protocol.compression import Codec
from keep.protocol.errors import PermissionDeniedError
from keep.protocol.index import Index, IndexedPack
from keep.protocol.keys import MasterKey, RepositoryKeys
from tests.client.conftest import Device
from tests.client.test_faults import random_tree
from tests.client.tree_builder import describe


def restored(target: Path, source: Path) -> Path:
    return target / str(source).lstrip("/")


@contextmanager
def stolen_after_backup(
    device: Device, tmp_path: Path, files: int, size: int
) -> Iterator[tuple[Path, str, Remote, Repository]]:
    """The owner backs up a tree of `files` random files; then a thief
    connects with a copy of device.json and nothing else: (source, snapshot
    id, the thief's connection, the repository as the thief opens it)."""
    src = random_tree(tmp_path / "src", files, size)
    device.init()
    snapshot = device.json("backup", str(src))["snapshot"]
    state = DeviceState.load(device.home)
    with Remote(state.server_url, state.device_token) as remote:
        thief = Repository(remote, state.keys, tmp_path / "thief-cache", state.suite)
        thief.load_index()
        yield src, snapshot, remote, thief


def test_a_planted_index_cannot_make_the_owners_prune_delete_history(device: Device, tmp_path: Path) -> None:
    with stolen_after_backup(device, tmp_path, 6, 3 << 20) as (src, _, remote, thief):
        real_packs = sorted(thief.pack_sizes)
        live = list(thief.index)
        old_indexes = list(thief.listed_index_ids)
        # A small pack of the thief's own...
        packer = Packer(thief)
        junk = b"the thief's own blob"
        packer.add(BlobType.DATA, blob_id(thief.keys.id, junk), Codec.RAW, junk, len(junk))
        packer.flush()
        (small,) = set(thief.pack_sizes) - set(real_packs)
        entry = thief.packs[small].entries[0]
        # ...and an index claiming every blob lives there, superseding every
        # index and condemning every real pack.
        lie = Index(
            (
                IndexedPack(
                    bytes.fromhex(small),
                    thief.suite,
                    thief.packs[small].salt,
                    tuple(entry._replace(blob_id=b, frame=i) for i, b in enumerate(live)),
                ),
            ),
            supersedes=tuple(map(bytes.fromhex, old_indexes)),
            condemned=tuple(map(bytes.fromhex, real_packs)),
        )
        remote.put_object("index", lie.seal(thief.keys.data, thief.suite, os.urandom(32)))
    # The owner's routine: check, prune (twice, past any wait), restore.
    check = device.run("check", check=False)
    assert "without the owner's signature and were ignored" in check.stdout
    for _ in range(2):
        device.run("prune", "--password-file", str(device.password_file))
    device.run("check", "--read-data")
    target = tmp_path / "restore"
    device.run("restore", "latest", "--target", str(target), "--verify")
    assert describe(restored(target, src)) == describe(src)


def test_a_device_cannot_sign_a_forget(device: Device, tmp_path: Path) -> None:
    """A thief's forget list (sealed with the data key, but unsigned) does not
    excuse a snapshot that disappears: the server and the thief together
    still cannot hide one."""
    with stolen_after_backup(device, tmp_path, 2, 1 << 16) as (_src, snap, remote, thief):
        lie = Index((), forgotten=(bytes.fromhex(snap),))
        remote.put_object("index", lie.seal(thief.keys.data, thief.suite, os.urandom(32)))
        # ...and a device credential cannot sign one through the engine either
        with pytest.raises(PermissionDeniedError):
            thief.save_index([], forgotten=[snap])
    assert [s["id"] for s in device.json("snapshots")] == [snap]


def test_device_json_holds_no_master_key_and_version_1_files_are_migrated(device: Device) -> None:
    device.init()
    raw = json.loads((device.home / "device.json").read_text())
    assert raw["version"] == 2
    assert "master_key" not in raw
    # A version 1 file (which held the master key) is rewritten without it.
    master = MasterKey(os.urandom(64))
    keys = RepositoryKeys.from_master(master)
    old = {k: v for k, v in raw.items() if k not in ("data_key", "id_key", "chunker_key", "owner_public_key")}
    old.update(version=1, master_key=base64.b64encode(master.material).decode())
    old.pop("fingerprint")
    (device.home / "device.json").write_text(json.dumps(old))
    state = DeviceState.load(device.home)
    assert state.keys == keys
    migrated = json.loads((device.home / "device.json").read_text())
    assert migrated["version"] == 2
    assert "master_key" not in migrated
    assert base64.b64encode(master.material).decode() not in (device.home / "device.json").read_text()


def test_a_planted_bad_copy_of_a_blob_neither_breaks_restores_nor_stops_prune(
    device: Device, tmp_path: Path
) -> None:
    """The thief uploads a pack claiming every real blob id (trees and data)
    with garbage behind each, and lists it in an index that readers meet
    first. Restores fall back to the good copies; the owner's prune drops the
    bad ones instead of stopping."""
    with stolen_after_backup(device, tmp_path, 4, 1 << 20) as (src, _, remote, thief):
        real_indexes = set(thief.listed_index_ids)
        real_packs = set(thief.packs)
        packer = Packer(thief)
        for blob, loc in list(thief.index.items()):
            junk = os.urandom(64)
            thief.drop_location(blob)  # so the packer takes the claim
            packer.add(loc.entry.blob_type, blob, Codec.RAW, junk, len(junk), check_index=False)
        filler = os.urandom(3 << 20)  # dead weight, so that prune repacks the planted pack
        packer.add(BlobType.DATA, blob_id(thief.keys.id, filler), Codec.RAW, filler, len(filler))
        packer.flush()
        planted = Index(tuple(p for pid, p in thief.packs.items() if pid not in real_packs))
        # Listed again until an index naming the planted packs sorts first.
        while min(o.id for o in remote.list_objects("index")) in real_indexes:
            remote.put_object("index", planted.seal(thief.keys.data, thief.suite, os.urandom(32)))
    shutil.rmtree(device.home / "cache")  # trees come from the packs again, planted claims first
    target = tmp_path / "restore"
    device.run("restore", "latest", "--target", str(target), "--verify")
    assert describe(restored(target, src)) == describe(src)
    result = device.json("prune", "--password-file", str(device.password_file))
    assert result["blobs_unreadable"] > 0
    device.run("check", "--read-data")
    device.run("restore", "latest", "--target", str(tmp_path / "again"), "--verify")
    assert describe(restored(tmp_path / "again", src)) == describe(src)
