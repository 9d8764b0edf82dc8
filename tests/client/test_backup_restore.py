"""The main job end to end: init, backup, snapshots, ls, restore — via the
real CLI against the real server."""

from __future__ import annotations

import errno
import gc
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import zstandard

from keep.client.device.state import DeviceState
from keep.client.engine import collector, packer
from keep.client.engine.archiver import READ_BUFFER, Archiver, BackupOptions
from keep.client.engine.repository import Repository
from keep.client.remote import Remote
from keep.protocol.blob import blob_id
from keep.protocol.chunker import Chunker
from keep.protocol.envelope import TAG_SIZE
from keep.protocol.index import Index
from keep.protocol.limits import CHUNK_MAX, CHUNK_MIN, TREE_RAW_MAX, MiB
from keep.protocol.tree import Tree
from tests.client.conftest import KEEP, Device
from tests.client.tree_builder import add_socket, allocated_bytes, describe, make_rich_tree


def restored(target: Path, source: Path) -> Path:
    return target / str(source).lstrip("/")


def test_round_trip_keeps_content_and_metadata(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_rich_tree(src)
    device.init()
    summary = device.json("backup", str(src))
    assert summary["warnings"] == []
    assert summary["files_new"] >= 9
    target = tmp_path / "restore"
    result = device.json("restore", "latest", "--target", str(target))
    assert result["warnings"] == []
    out = restored(target, src)
    assert describe(out) == describe(src)
    # the hole stays a hole
    assert allocated_bytes(out / "sparse.img") < 1024 * 1024
    # hardlinks are hardlinks again
    assert os.stat(out / "hard-a").st_ino == os.stat(out / "hard-b").st_ino
    assert os.getxattr(out / "docs" / "readme.txt", "user.keep.test") == b"xattr value"


def _parents_seen(path: Path) -> list[tuple[int, int]]:
    """The changes a snapshot would record of `path`'s parent directories."""
    return [(st.st_mtime_ns, st.st_ctime_ns) for st in map(os.lstat, path.parents)]


def test_unchanged_rebackup_reads_no_file_contents(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_rich_tree(src)
    device.init()
    # A snapshot holds the metadata of the source's parent directories too,
    # and /tmp changes whenever anything on the machine makes a file there:
    # "nothing new" holds for two backups that saw the same parents.
    seen = [_parents_seen(src)]
    first = device.json("backup", str(src))
    seen.append(_parents_seen(src))
    for _ in range(5):
        second = device.json("backup", str(src))
        seen.append(_parents_seen(src))
        assert second["bytes_read"] == 0
        assert second["files_new"] == second["files_changed"] == 0
        assert second["files_unchanged"] == first["files_new"]
        if seen[-3] == seen[-2] == seen[-1]:
            break
    else:
        pytest.fail("the parent directories changed during every backup")
    assert second["bytes_added"] == 0  # identical trees: nothing new at all
    (src / "docs" / "readme.txt").write_text("changed\n")
    third = device.json("backup", str(src))
    assert third["files_changed"] == 1
    assert third["bytes_read"] == len("changed\n")
    snaps = device.json("snapshots")
    assert len(snaps) == len(seen)  # one per backup
    assert [s["id"] for s in snaps][-1] == third["snapshot"]


def test_ls_lists_the_snapshot(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_rich_tree(src)
    device.init()
    device.run("backup", str(src))
    rows = device.json("ls", "latest", str(src / "docs"))
    paths = {r["path"] for r in rows}
    assert str(src / "docs" / "readme.txt") in paths
    assert str(src / "link-rel") not in paths
    human = device.run("ls", "latest").stdout
    assert "readme.txt" in human


def test_include_restores_only_the_selected_path(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_rich_tree(src)
    device.init()
    device.run("backup", str(src))
    target = tmp_path / "restore"
    device.run("restore", "latest", "--target", str(target), "--include", str(src / "docs"))
    out = restored(target, src)
    assert (out / "docs" / "big.bin").read_bytes() == (src / "docs" / "big.bin").read_bytes()
    assert not (out / "hard-a").exists()


def test_restore_onto_existing_tree_skips_matching_files(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_rich_tree(src)
    device.init()
    device.run("backup", str(src))
    target = tmp_path / "restore"
    device.run("restore", "latest", "--target", str(target))
    (restored(target, src) / "docs" / "big.bin").write_bytes(b"damaged")
    again = device.json("restore", "latest", "--target", str(target))
    assert again["files_skipped"] >= 5
    assert describe(restored(target, src)) == describe(src)


def test_excludes_and_cachedir_tags(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "cache").mkdir(parents=True)
    (src / "cache" / "CACHEDIR.TAG").write_bytes(b"Signature: 8a477f597d28d172789f06886806bc55\n")
    (src / "cache" / "blob").write_text("cached")
    (src / "keep.txt").write_text("keep me")
    (src / "skip.tmp").write_text("temporary")
    device.init()
    device.run("backup", str(src), "--exclude", "*.tmp", "--exclude-caches")
    paths = {r["path"] for r in device.json("ls", "latest")}
    assert str(src / "keep.txt") in paths
    assert str(src / "skip.tmp") not in paths
    assert str(src / "cache" / "CACHEDIR.TAG") in paths
    assert str(src / "cache" / "blob") not in paths


def test_sockets_are_warnings_and_exit_3(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "file").write_text("x")
    sock = add_socket(src)
    try:
        device.init()
        result = device.run("backup", str(src), check=False)
    finally:
        sock.close()
    assert result.returncode == 3, result.stderr
    assert "socket skipped" in result.stdout
    assert device.json("snapshots")  # the snapshot was still written


def test_kill_9_mid_backup_then_backup_and_restore_are_complete(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(12):
        (src / f"f{i}.bin").write_bytes(os.urandom(6 * 1024 * 1024))
    device.init()
    env = device.environ()
    proc = subprocess.Popen(
        [KEEP, "backup", str(src)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        uploaded = device.json("stats")["stored_bytes"] or 0
        if uploaded > 20 * 1024 * 1024:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    summary = device.json("backup", str(src))
    assert summary["warnings"] == []
    # packs the killed run uploaded were re-indexed, not uploaded again
    assert summary["bytes_added"] < 80 * 1024 * 1024
    target = tmp_path / "restore"
    device.run("restore", "latest", "--target", str(target))
    assert describe(restored(target, src)) == describe(src)


def test_error_exit_codes_and_one_line_messages(device: Device, tmp_path: Path) -> None:
    device.init()
    other = Device(device.server, tmp_path / "other-home", device.account, tmp_path / "wrong")
    other.password_file.write_text("not the password")
    result = other.login(check=False)
    assert (result.returncode, result.stderr.strip()) == (
        10,
        f"keep: wrong password, or no such account ('{device.account}')",
    )
    result = other.run(
        "login",
        "--server",
        device.server,
        "--account",
        "nobody-here",
        "--password-file",
        str(other.password_file),
        check=False,
    )
    assert (result.returncode, result.stderr.strip()) == (  # the server does not say which
        10,
        "keep: wrong password, or no such account ('nobody-here')",
    )
    result = other.run(
        "login",
        "--server",
        "http://127.0.0.1:9",
        "--account",
        "x",
        "--password-file",
        str(other.password_file),
        check=False,
    )
    assert result.returncode == 12
    assert "no keep-server answers at http://127.0.0.1:9 (connection refused)" in result.stderr
    assert "Traceback" not in result.stderr
    result = other.run("snapshots", check=False)
    assert result.returncode == 2
    assert "keep init" in result.stderr


def test_login_on_a_new_machine_with_the_recovery_kit(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_rich_tree(src)
    info = device.init()
    device.run("backup", str(src))
    new = Device(device.server, tmp_path / "new-home", device.account, device.password_file)
    reply = new.json(
        "login",
        "--server",
        device.server,
        "--account",
        device.account,
        "--recovery-kit",
        str(tmp_path / "kit.txt"),
    )
    assert reply["fingerprint"] == info["fingerprint"]
    target = tmp_path / "restore"
    new.run("restore", "latest", "--target", str(target))
    assert describe(restored(target, src)) == describe(src)


def test_file_growing_while_read_is_a_warning_not_a_crash(device: Device, tmp_path: Path) -> None:
    """A file that grows while it is read (log files do) ends in the snapshot with
    what was read, and the backup warns and exits 3."""
    import threading

    src = tmp_path / "src"
    src.mkdir()
    log = src / "growing.log"
    log.write_bytes(os.urandom(40 * 1024 * 1024))
    stop = threading.Event()

    def grow() -> None:
        with log.open("ab") as f:
            while not stop.is_set():
                f.write(os.urandom(256 * 1024))
                f.flush()
                time.sleep(0.001)

    device.init()
    writer = threading.Thread(target=grow)
    writer.start()
    try:
        result = device.run("--json", "backup", str(src), check=False)
    finally:
        stop.set()
        writer.join()
    assert result.returncode in (0, 3), result.stderr
    if result.returncode == 3:
        assert "changed while being read" in result.stdout
    rows = device.json("ls", "latest", str(log))
    assert rows[0]["size"] >= 40 * 1024 * 1024


def test_unchanged_backup_does_not_load_the_index(device: Device, tmp_path: Path) -> None:
    """With the parent's trees in the local cache, an unchanged backup reads no
    file and does not load the index: the parent snapshot vouches for its
    blobs. (A machine with an empty cache fetches the index once, to find the
    parent's trees.)"""
    src = tmp_path / "src"
    make_rich_tree(src)
    device.init()
    device.run("backup", str(src))
    other = device.another(tmp_path / "machine-b")
    first = other.json("backup", str(src))
    assert first["bytes_read"] == 0
    assert (other.home / "cache" / "index").exists()
    shutil.rmtree(other.home / "cache" / "index")
    second = other.json("backup", str(src))
    assert second["bytes_read"] == 0
    assert second["files_new"] == second["files_changed"] == 0
    assert not (other.home / "cache" / "index").exists()


def test_files_cut_across_read_buffers_give_the_chunks_of_the_whole_file(
    device: Device, tmp_path: Path
) -> None:
    """Files are read in pooled buffers, with the uncut tail carried into the
    next one; the chunks (and so deduplication) must be exactly those of
    cutting each file whole. Sizes straddle the read size and the pooled-read
    threshold, a zero run forces maximum-size chunks and the longest carry,
    and more files than buffers make the pool turn over."""
    rng = random.Random(5)
    src = tmp_path / "src"
    src.mkdir()
    sizes = [MiB - 1, MiB, READ_BUFFER - 1, READ_BUFFER, READ_BUFFER + 1, 3 * READ_BUFFER + 12345]
    for n, size in enumerate(sizes):
        (src / f"f{n}.bin").write_bytes(rng.randbytes(size))
        (src / f"f{n}.txt").write_bytes(b"small file %d\n" % n)
    (src / "zeros.img").write_bytes(
        rng.randbytes(2 * MiB) + bytes(CHUNK_MAX * 2 + 5) + rng.randbytes(3 * MiB)
    )
    device.init()
    snapshot = device.json("backup", str(src))["snapshot"]

    state = DeviceState.load(device.home)
    keys = state.keys
    chunker = Chunker(keys.chunker)
    with Remote(state.server_url, state.device_token) as remote:
        repo = Repository(remote, keys, device.home / "c2", state.suite)
        (info,) = [s for s in repo.snapshots() if s.id == snapshot]
        tree = Tree.from_bytes(repo.read_tree_bytes(info.snapshot.tree))
        for part in src.parts[1:]:
            (node,) = [n for n in tree.nodes if n.name == os.fsencode(part)]
            assert node.subtree is not None
            tree = Tree.from_bytes(repo.read_tree_bytes(node.subtree))
    files = {n.name.decode(): n.content for n in tree.nodes}
    assert len(files) == 2 * len(sizes) + 1
    for name, content in files.items():
        data = (src / name).read_bytes()
        view, offset, expected = memoryview(data), 0, []
        for length in chunker.cut(data, final=True) if len(data) >= CHUNK_MIN else [len(data)]:
            expected.append(blob_id(keys.id, view[offset : offset + length]))
            offset += length
        assert list(content) == expected, name
    restored_src = restored(tmp_path / "out", src)
    device.run("restore", snapshot, "--target", str(tmp_path / "out"))
    assert describe(restored_src) == describe(src)


@pytest.mark.parametrize("size", [3 * MiB, 1000], ids=["pipeline", "small-file-path"])
def test_a_failure_behind_the_pipeline_fails_the_backup_not_a_file(
    device: Device, tmp_path: Path, size: int
) -> None:
    """An error raised while a result is handed on (here: the spool disk is
    full when a blob reaches the packer) may surface while another file is
    being read; it must end the backup with that error, not become a
    "cannot read" warning about the file that happened to be open. The same
    for a small file, whose blob is sealed while it is being read."""
    src = tmp_path / "src"
    src.mkdir()
    for n in range(6):
        (src / f"f{n}.bin").write_bytes(os.urandom(size))
    device.init()
    state = DeviceState.load(device.home)
    with Remote(state.server_url, state.device_token) as remote:
        repo = Repository(remote, state.keys, device.home / "c2", state.suite)
        archiver = Archiver(repo, BackupOptions(host="test"))
        real_add = archiver.packer.add
        calls = 0

        def add(*args: Any, **kwargs: Any) -> bool:
            nonlocal calls
            calls += 1
            if calls == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_add(*args, **kwargs)

        archiver.packer.add = add  # type: ignore[method-assign]
        with pytest.raises(OSError, match="No space left") as caught:
            archiver.run([os.fsencode(src)], None)
    assert caught.value.errno == errno.ENOSPC
    assert archiver.warnings == []


def test_the_compression_level_comes_from_the_flag_or_keep_toml(device: Device, tmp_path: Path) -> None:
    """Default level 1; `[backup] compression` in keep.toml; `--compression`
    over both. Checked on the stored blobs themselves, then restored."""
    rng = random.Random(9)
    words = [rng.randbytes(rng.randint(2, 8)).hex().encode() for _ in range(500)]
    src = tmp_path / "src"
    src.mkdir()
    levels = {"default.txt": 1, "config.txt": 7, "flag.txt": 19}
    for name in levels:
        (src / name).write_bytes(b" ".join(rng.choice(words) for _ in range(20_000)))
    config = tmp_path / "keep.toml"
    device.init()
    device.json("backup", str(src / "default.txt"))
    config.write_text("[backup]\ncompression = 7\n")
    device.env["KEEP_CONFIG"] = str(config)
    device.json("backup", str(src / "config.txt"))
    device.json("backup", "--compression", "19", str(src / "flag.txt"))
    assert device.run("backup", "--compression", "0", str(src), check=False).returncode == 2

    state = DeviceState.load(device.home)
    keys = state.keys
    with Remote(state.server_url, state.device_token) as remote:
        repo = Repository(remote, keys, device.home / "c2", state.suite)
        repo.ensure_index()
        for name, level in levels.items():
            data = (src / name).read_bytes()
            entry = repo.index[blob_id(keys.id, data)].entry
            expected = zstandard.ZstdCompressor(level=level, write_checksum=False).compress(data)
            assert entry.length == len(expected) + TAG_SIZE, name
    device.run("restore", "latest", "--target", str(tmp_path / "out"))
    restored_file = restored(tmp_path / "out", src) / "flag.txt"
    assert restored_file.read_bytes() == (src / "flag.txt").read_bytes()


def _tree_ids(repo: Repository, tree_id: bytes, prefix: str = "") -> dict[str, bytes]:
    """Path → tree id of every directory below (and including) `tree_id`."""
    ids = {prefix or "/": tree_id}
    for node in Tree.from_bytes(repo.read_tree_bytes(tree_id)).nodes:
        if node.subtree is not None:
            ids.update(_tree_ids(repo, node.subtree, f"{prefix}/{node.name.decode()}"))
    return ids


def test_unchanged_directories_keep_their_tree_ids_and_changes_reach_the_root(
    device: Device, tmp_path: Path
) -> None:
    """An unchanged directory's tree is taken from the parent snapshot without
    being encoded again; a change anywhere below a directory, even one that
    keeps the number of entries (an mtime, a rename), gives it a new tree."""
    src = tmp_path / "src"
    for d in ("a/b", "a/c", "x"):
        (src / d).mkdir(parents=True)
        for n in range(3):
            (src / d / f"f{n}").write_text(f"{d} {n}\n")
    device.init()
    device.json("backup", str(src))
    state = DeviceState.load(device.home)
    keys = state.keys

    def backup_tree_ids() -> dict[str, bytes]:
        snapshot = device.json("backup", str(src))["snapshot"]
        with Remote(state.server_url, state.device_token) as remote:
            repo = Repository(remote, keys, device.home / "c2", state.suite)
            (info,) = [s for s in repo.snapshots() if s.id == snapshot]
            ids = _tree_ids(repo, info.snapshot.tree)
            for tree_id in ids.values():  # ids taken over are still those of the trees' bytes
                assert blob_id(keys.id, Tree.from_bytes(repo.read_tree_bytes(tree_id)).to_bytes()) == tree_id
            return {
                path.removeprefix(str(src)) or "/": tid
                for path, tid in ids.items()
                if path.startswith(str(src))
            }

    first = backup_tree_ids()
    assert backup_tree_ids() == first
    os.utime(src / "a/b/f1", ns=(1, 1))
    touched = backup_tree_ids()
    assert {p for p in first if touched[p] != first[p]} == {"/", "/a", "/a/b"}
    (src / "x/f2").rename(src / "x/g2")
    renamed = backup_tree_ids()
    assert {p for p in first if renamed[p] != touched[p]} == {"/", "/x"}
    device.run("restore", "latest", "--target", str(tmp_path / "out"))
    assert describe(restored(tmp_path / "out", src)) == describe(src)


def _write_300_small_files(src: Path, text: bytes = b"small file") -> None:
    src.mkdir(exist_ok=True)
    for n in range(300):
        (src / f"f{n:03}").write_bytes(b"%s %d\n" % (text, n))


def test_many_small_files_are_indexed_in_bounded_index_objects(
    device: Device, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Index objects are written as packs land, at most INDEX_BLOBS blobs
    (plus one pack) each, not as one object of every blob at the end."""
    monkeypatch.setattr(packer, "INDEX_BLOBS", 40)
    monkeypatch.setattr(packer, "PACK_BLOBS_MAX", 25)
    src = tmp_path / "src"
    _write_300_small_files(src)
    device.init()
    state = DeviceState.load(device.home)
    keys = state.keys
    with Remote(state.server_url, state.device_token) as remote:
        repo = Repository(remote, keys, device.home / "c2", state.suite)
        Archiver(repo, BackupOptions(host="test")).run([os.fsencode(src)], None)
        sizes = [
            sum(len(p.entries) for p in Index.open(keys.data, remote.get_object("index", info.id)).packs)
            for info in remote.list_objects("index")
        ]
    assert len(sizes) >= 300 // (40 + 25)
    assert max(sizes) < 40 + 25
    assert sum(sizes) >= 300  # every file's blob (and the trees) indexed
    device.run("restore", "latest", "--target", str(tmp_path / "out"))
    assert describe(restored(tmp_path / "out", src)) == describe(src)


def test_a_backup_pauses_the_collector_and_leaves_no_garbage_per_pack(
    device: Device, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cyclic collector is off for the length of a backup (it would walk
    every node and index entry again at each full collection: 0.94x the
    time of 100,000 small files) and on again after, however the backup ends. So
    what a backup leaves for the collector must not grow with its packs:
    each upload through `socket.sendfile` left a cycle (4 objects)."""
    monkeypatch.setattr(packer, "PACK_BLOBS_MAX", 25)
    src = tmp_path / "src"
    _write_300_small_files(src)
    device.init()
    state = DeviceState.load(device.home)
    seen: list[bool] = []
    with Remote(state.server_url, state.device_token) as remote:
        repo = Repository(remote, state.keys, device.home / "c2", state.suite)
        archiver = Archiver(repo, BackupOptions(host="test"))
        real_add = archiver.packer.add_unknown

        def add(*args: Any, **kwargs: Any) -> None:
            seen.append(gc.isenabled())
            real_add(*args, **kwargs)

        archiver.packer.add_unknown = add  # type: ignore[method-assign]
        assert gc.isenabled()
        archiver.run([os.fsencode(src)], None)
        assert seen
        assert not any(seen)
        assert gc.isenabled()

        _write_300_small_files(src, b"changed small file")  # new content: as many packs again
        gc.collect()
        with collector.paused():  # the backup's pause nests in this one: nothing is collected until counted
            result = Archiver(repo, BackupOptions(host="test")).run([os.fsencode(src)], None)
            garbage = gc.collect()
        assert result.packs >= 12
        assert garbage <= 20  # the chunk pipeline's read buffers, once

        failing = Archiver(repo, BackupOptions(host="test"))

        def full(*args: Any, **kwargs: Any) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        failing.packer.add_unknown = full  # type: ignore[method-assign]
        (src / "new").write_bytes(b"new file\n")
        with pytest.raises(OSError, match="No space left"):
            failing.run([os.fsencode(src)], None)
        assert gc.isenabled()


def test_the_tree_cache_is_checked_and_never_written_through_a_link(device: Device, tmp_path: Path) -> None:
    """A cached tree is named by its id and checked against it whenever it
    is read: a torn or altered file, or a link planted at its name, gives way
    to the tree read from the server, as does a file larger than any tree; and
    caching a tree never writes through a planted link or over a file already
    there."""
    src = tmp_path / "src"
    make_rich_tree(src)
    device.init()
    device.run("backup", str(src))
    state = DeviceState.load(device.home)
    victim = tmp_path / "victim"
    victim.write_bytes(b"not a tree")
    with Remote(state.server_url, state.device_token) as remote:
        repo = Repository(remote, state.keys, device.home / "cache", state.suite)
        subtrees, walk = [], [repo.snapshots()[0].snapshot.tree]
        while walk:
            tid = walk.pop()
            subtrees.append(tid)
            walk += [n.subtree for n in Tree.from_bytes(repo.read_tree_bytes(tid)).nodes if n.subtree]
        subtrees = list(dict.fromkeys(subtrees))
        assert len(subtrees) >= 4
        torn, planted, linked, huge = subtrees[:4]
        expected = {tid: blob_id(repo.keys.id, repo.read_tree_bytes(tid)) for tid in subtrees[:4]}
        assert all(expected[tid] == tid for tid in expected)
        cached = {tid: Path(repo.tree_cache_path(tid)) for tid in subtrees[:4]}
        data = {tid: cached[tid].read_bytes() for tid in subtrees[:4]}
        os.truncate(cached[huge], TREE_RAW_MAX + 1)  # sparse: refused by its size, not read
        cached[torn].write_bytes(data[torn][: len(data[torn]) // 2])
        cached[planted].write_bytes(data[linked])  # another tree's bytes under this name
        cached[linked].unlink()
        cached[linked].symlink_to(victim)
        repo.cache_tree(linked, data[linked])  # a link in the way: left alone, nothing written through it
        assert victim.read_bytes() == b"not a tree"
        repo.cache_tree(planted, data[planted])  # a file in the way: left as it is
        assert cached[planted].read_bytes() == data[linked]
        for tid in subtrees[:4]:
            assert repo.read_tree_bytes(tid) == data[tid]
            assert cached[tid].read_bytes() == data[tid]  # replaced by the tree read from the server
            assert not cached[tid].is_symlink()
    assert victim.read_bytes() == b"not a tree"
