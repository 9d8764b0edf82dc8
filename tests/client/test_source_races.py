"""A source file that changes between the walk's lstat and its read.

The walk lists and lstats an entry, then opens and reads it; in between the
owner's programs may replace, grow or swap it. Each case is forced
deterministically by handing the archiver the lstat taken before the change,
on both read paths (a file of at most SMALL_FILE_MAX bytes is read in one
pass; larger ones go through the chunk pipeline). The backup must never hang
(a FIFO put in a file's place is opened non-blocking), never store one file's
bytes under another's inode without saying so, and say what happened as a
warning about that path."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from keep.client.device.state import DeviceState
from keep.client.engine import archiver as archiver_module
from keep.client.engine.archiver import SMALL_FILE_MAX, Archiver, BackupOptions
from keep.client.engine.repository import Repository
from keep.client.remote import Remote
from keep.protocol.blob import blob_id
from keep.protocol.chunker import Chunker
from keep.protocol.limits import CHUNK_MIN
from keep.protocol.tree import Node
from tests.client.conftest import Device

SIZES = [100, SMALL_FILE_MAX, SMALL_FILE_MAX + 1, 3 * CHUNK_MIN]
IDS = ["small", "small-max", "just-past-small", "pipeline"]


@pytest.fixture(params=["engine", "helper"])
def archiver(
    device: Device, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Archiver]:
    """An archiver that reads small files itself, or (`helper`) one that
    hands every one to the source-reading helper process."""
    if request.param == "helper":
        monkeypatch.setattr(archiver_module, "INLINE_FILES", 0)
    device.init()
    state = DeviceState.load(device.home)
    with Remote(state.server_url, state.device_token) as remote:
        made = Archiver(Repository(remote, state.keys, device.home / "c2", state.suite), BackupOptions())
        try:
            yield made
        finally:
            made.pipeline.close()
            made.packer.abort()
            if made._reader is not None:
                made._reader.close()


def back_up_one(archiver: Archiver, path: Path, st: os.stat_result) -> Node | None:
    """The node the archiver makes of `path`, given the lstat `st` the walk took."""
    pending = archiver._file(os.fsencode(path), os.fsencode(path.name), st, None)
    archiver._send_small()
    archiver.pipeline.drain()
    if pending is None or isinstance(pending, Node):
        return pending
    return pending.finish()


def expected_ids(archiver: Archiver, data: bytes) -> tuple[bytes, ...]:
    key = archiver.repo.keys.id
    if len(data) < CHUNK_MIN:
        return (blob_id(key, data),)  # an empty file is one empty blob
    view, offset, ids = memoryview(data), 0, []
    for length in Chunker(archiver.repo.keys.chunker).cut(data, final=True):
        ids.append(blob_id(key, view[offset : offset + length]))
        offset += length
    return tuple(ids)


def warnings_for(archiver: Archiver, path: Path) -> list[str]:
    return [w.message for w in archiver.warnings if w.path == str(path)]


def to_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)  # no writer: a blocking open would wait for ever


def to_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def to_another_file(path: Path) -> None:
    """Another inode under the same name (an editor's save-by-rename): it
    must not be stored under the first one's metadata."""
    path.rename(path.with_name("old"))  # kept, so its inode number cannot be reused
    path.write_bytes(os.urandom(100))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("replace", [to_fifo, to_directory, to_another_file], ids=["fifo", "dir", "inode"])
@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_a_replaced_file_is_a_warning_never_a_hang(
    archiver: Archiver, tmp_path: Path, size: int, replace: Callable[[Path], None]
) -> None:
    path = tmp_path / "f"
    path.write_bytes(os.urandom(size))
    st = os.lstat(path)
    replace(path)
    assert back_up_one(archiver, path, st) is None
    assert warnings_for(archiver, path) == ["cannot read: replaced while being opened"]


def grow(path: Path, size: int) -> int:
    with path.open("ab") as f:
        f.write(os.urandom(5000))  # across the small-file bound for the small sizes
    return size + 5000


def shrink(path: Path, size: int) -> int:
    os.truncate(path, size // 2)
    return size // 2


@pytest.mark.parametrize("resize", [grow, shrink], ids=["grew", "shrank"])
@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_a_file_that_changed_size_is_stored_as_read_with_a_warning(
    archiver: Archiver, tmp_path: Path, size: int, resize: Callable[[Path, int], int]
) -> None:
    """A file that grew is read to its new end (the one-pass path hands it
    to the full read); one that shrank is stored as it now is."""
    path = tmp_path / "f"
    path.write_bytes(os.urandom(size))
    st = os.lstat(path)
    new_size = resize(path, size)
    node = back_up_one(archiver, path, st)
    assert node is not None
    data = path.read_bytes()
    assert node.size == len(data) == new_size
    assert node.content == expected_ids(archiver, data)
    assert warnings_for(archiver, path) == ["changed while being read; the snapshot has what was read"]


@pytest.mark.parametrize("size", [0, 1, SMALL_FILE_MAX], ids=["empty", "one-byte", "small-max"])
def test_a_small_files_node_has_its_xattrs_and_content(archiver: Archiver, tmp_path: Path, size: int) -> None:
    """The one-pass path reads extended attributes from the open descriptor:
    the same attributes, sorted by name, as the path-based read, and a node
    equal in every field to the one the general path builds."""
    path = tmp_path / "f"
    data = os.urandom(size)
    path.write_bytes(data)
    os.setxattr(path, "user.zeta", b"last")
    os.setxattr(path, "user.alpha", b"first")
    st = os.lstat(path)
    node = back_up_one(archiver, path, st)
    assert node is not None
    # Built field by field on this path: the same node as the general builder's.
    assert node == archiver_module._meta_node(b"f", st, os.fsencode(path), content=node.content)
    assert node.xattrs == ((b"user.alpha", b"first"), (b"user.zeta", b"last"))
    assert node.size == size
    assert node.content == expected_ids(archiver, data)
    assert archiver.warnings == []


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_a_file_that_vanished_is_a_warning(archiver: Archiver, tmp_path: Path, size: int) -> None:
    path = tmp_path / "f"
    path.write_bytes(os.urandom(size))
    st = os.lstat(path)
    path.unlink()
    assert back_up_one(archiver, path, st) is None
    assert warnings_for(archiver, path) == ["vanished before it could be read"]
    assert archiver.stats.bytes_total == 0
    assert archiver.stats.files_new == 0
