"""Restore of hostile snapshots, crafted with the account's real keys (as a
compromised device or a buggy writer could): nothing may land outside the
target, and the user gets a clear error."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from keep.client.device.state import DeviceState
from keep.client.engine.packer import Packer
from keep.client.engine.repository import Repository
from keep.client.remote import Remote
from keep.protocol import msgcodec
from keep.protocol.blob import BlobType, blob_id
from keep.protocol.compression import Codec
from keep.protocol.snapshot import Snapshot
from keep.protocol.tree import Node, NodeType
from tests.client.conftest import Device


def plant(device: Device, trees: list[list[list[object]]]) -> None:
    """Store raw tree records (last one is the root) and a snapshot of them,
    bypassing the encoder's checks."""
    state = DeviceState.load(device.home)
    with Remote(state.server_url, state.device_token) as remote:
        repo = Repository(remote, state.keys, device.home / "cache2", state.suite)
        repo.load_index()
        packer = Packer(repo)
        ids = []
        for nodes in trees:
            data = msgcodec.pack([1, nodes])
            bid = blob_id(repo.keys.id, data)
            packer.add(BlobType.TREE, bid, Codec.RAW, data, len(data))
            ids.append(bid)
        content = b"evil content"
        cid = blob_id(repo.keys.id, content)
        packer.add(BlobType.DATA, cid, Codec.RAW, content, len(content))
        packer.flush()
        repo.save_snapshot(Snapshot(time.time_ns(), "h", "u", (b"/x",), ids[-1], "evil", ()))


def file_node(name: bytes) -> list[object]:
    content = b"evil content"
    node = Node(name, NodeType.FILE, size=len(content)).to_list()
    node[16] = []  # content filled below by callers that need it
    return node


@pytest.mark.parametrize("name", [b"..", b"../../escaped", b"/etc/escaped", b"a/../../escaped", b"."])
def test_restore_refuses_names_that_escape(device: Device, tmp_path: Path, name: bytes) -> None:
    device.init()
    plant(device, [[file_node(name)]])
    target = tmp_path / "t" / "restore"
    result = device.run("restore", "latest", "--target", str(target), check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "path component" in result.stderr
    assert not (tmp_path / "t" / "escaped").exists()
    assert not (tmp_path / "escaped").exists()
    assert not Path("/etc/escaped").exists()


def test_restore_refuses_duplicate_names(device: Device, tmp_path: Path) -> None:
    device.init()
    plant(device, [[file_node(b"same"), file_node(b"same")]])
    result = device.run("restore", "latest", "--target", str(tmp_path / "r"), check=False)
    assert result.returncode != 0
    assert "duplicate" in result.stderr


def test_restore_does_not_follow_symlinks_in_the_snapshot(device: Device, tmp_path: Path) -> None:
    """A snapshot with a symlink `link -> outside` cannot also contain a dir
    `link` (names are unique), so files can only be written beside it — and a
    symlink already in the target is not followed either."""
    outside = tmp_path / "outside"
    outside.mkdir()
    device.init()
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "passwd").write_text("restored content")
    device.run("backup", str(src))
    target = tmp_path / "restore"
    # The target already holds a symlink where the snapshot has a directory.
    inner = target / str(src).lstrip("/")
    inner.mkdir(parents=True)
    os.symlink(outside, inner / "etc")
    result = device.run("restore", "latest", "--target", str(target), check=False)
    assert result.returncode == 3
    assert "not a directory" in result.stdout
    assert list(outside.iterdir()) == []


def test_restore_refuses_a_symlink_then_file_trick(device: Device, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    link = Node(b"link", NodeType.SYMLINK, target=os.fsencode(outside)).to_list()
    device.init()
    # `link/file` is not expressible (names are single components); the closest
    # trick is a symlink and a file of the same name, which decoding refuses.
    plant(device, [[file_node(b"link"), link]])
    result = device.run("restore", "latest", "--target", str(tmp_path / "r"), check=False)
    assert result.returncode != 0
    assert list(outside.iterdir()) == []
