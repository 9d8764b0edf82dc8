"""Object ids across the change from SHA-256 to BLAKE3 (docs/format.md §1),
against a real keep-server: a server that predates BLAKE3 ids (played by a
proxy that drops the `Keep-Object-Hash` header, which such a server never
read) gets SHA-256 names from this client; once the server knows the header,
new objects are named by BLAKE3; a repository holding both restores whole."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from keep.client.device.state import DeviceState
from keep.client.remote import Remote
from keep.protocol.object_id import HASH_HEADER, object_id
from tests.client.conftest import Device
from tests.client.test_faults import random_tree, restored
from tests.client.tree_builder import describe

KINDS = ("pack", "index", "snapshot")


def _names(device: Device, server: str) -> dict[str, set[str]]:
    """Which hash names each stored object of `device`'s account: every id
    is checked against a fresh download of its body."""
    state = DeviceState.load(device.home)
    names: dict[str, set[str]] = {"blake3": set(), "sha256": set()}
    with Remote(server, state.device_token) as remote:
        for kind in KINDS:
            for info in remote.list_objects(kind):
                body = remote.get_object(kind, info.id)
                if object_id(body) == info.id:
                    names["blake3"].add(info.id)
                else:
                    assert hashlib.sha256(body).hexdigest() == info.id
                    names["sha256"].add(info.id)
    return names


def test_an_older_server_gets_sha256_names_and_the_mixed_repository_restores(
    tamper: tuple[str, dict[str, Any]], device: Device, server: str, tmp_path: Path
) -> None:
    url, mode = tamper
    mode["drop_request_headers"] = {HASH_HEADER.lower()}
    dev = Device(url, device.home, device.account, device.password_file)
    dev.init()
    first_src = random_tree(tmp_path / "first", 3, 1 << 20)
    first = dev.json("backup", str(first_src))["snapshot"]
    before = _names(dev, server)
    assert before["blake3"] == set()
    assert len(before["sha256"]) >= 3  # packs, an index and the snapshot

    mode.clear()  # the server now reads the header
    second_src = random_tree(tmp_path / "second", 3, 1 << 20)
    second = dev.json("backup", str(second_src))["snapshot"]
    after = _names(dev, server)
    assert after["sha256"] == before["sha256"]
    assert len(after["blake3"]) >= 3

    shutil.rmtree(dev.home / "cache", ignore_errors=True)
    for snapshot, src in ((first, first_src), (second, second_src)):
        target = tmp_path / f"restore-{snapshot[:8]}"
        dev.run("restore", snapshot, "--target", str(target))
        assert describe(restored(target, src)) == describe(src)
    assert dev.json("check", "--read-data")["ok"]
