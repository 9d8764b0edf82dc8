"""A backup's small files read by a helper process
(`keep.client.engine.source_reader`): what it stores is exactly what reading
them on the engine thread stores, however late the answers come, and a
helper that dies stops the backup with one error and no snapshot."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from keep.client.device.state import DeviceState
from keep.client.engine import archiver as archiver_module
from keep.client.engine import helper_process, source_reader
from keep.client.engine.archiver import SMALL_FILE_MAX, Archiver, BackupOptions
from keep.client.engine.repository import Repository
from keep.client.engine.source_reader import INLINE_FILES
from keep.client.remote import Remote
from keep.protocol.blob import blob_id
from keep.protocol.compression import DATA_LEVEL, Codec
from keep.protocol.limits import CHUNK_MIN
from keep.protocol.tree import Node, NodeType, Tree
from tests.client.conftest import Device

FILES = 3000


@pytest.fixture
def repo(device: Device) -> Iterator[Repository]:
    device.init()
    state = DeviceState.load(device.home)
    with Remote(state.server_url, state.device_token) as remote:
        yield Repository(remote, state.keys, device.home / "c2", state.suite)


def make_tree(root: Path) -> None:
    """FILES small files in directories of 150 (every third exactly 2048
    bytes, every fiftieth empty, every eleventh up to the one-pass path's
    limit and the others up to 4 KiB, every seventh with extended
    attributes, every other one text that compresses), with a file too
    large for the one-pass path after every hundredth."""
    rng = random.Random(3)
    for n in range(FILES):
        d = root / f"d{n // 150:02}"
        d.mkdir(parents=True, exist_ok=True)
        limit = SMALL_FILE_MAX if n % 11 == 0 else 4096
        size = 0 if n % 50 == 0 else 2048 if n % 3 == 0 else rng.randint(1, limit)
        path = d / f"f{n:05}"
        if n % 2:
            path.write_bytes((f"line {n} of a text file\n" * (size // 20 + 1)).encode()[:size])
        else:
            path.write_bytes(rng.randbytes(size))
        if n % 7 == 0:
            os.setxattr(path, "user.n", str(n).encode())
            os.setxattr(path, "user.a", b"first")
        if n % 100 == 0:
            (d / f"g{n:05}").write_bytes(rng.randbytes(SMALL_FILE_MAX + 1 + n))


def back_up(repo: Repository, src: Path) -> bytes:
    """The snapshot's root tree id."""
    result = Archiver(repo, BackupOptions(host="test")).run([os.fsencode(src)], None)
    assert result.warnings == ()
    return result.snapshot.tree


def files_in(repo: Repository, tree_id: bytes, prefix: bytes = b"") -> dict[bytes, Node]:
    out: dict[bytes, Node] = {}
    for node in Tree.from_bytes(repo.read_tree_bytes(tree_id)).nodes:
        path = prefix + b"/" + node.name
        if node.type is NodeType.DIR:
            assert node.subtree is not None
            out.update(files_in(repo, node.subtree, path))
        else:
            out[path] = node
    return out


def tree_ids(repo: Repository, root: bytes) -> set[bytes]:
    found, walk = set(), [root]
    while walk:
        tid = walk.pop()
        found.add(tid)
        walk += [n.subtree for n in Tree.from_bytes(repo.read_tree_bytes(tid)).nodes if n.subtree]
    return found


def engine_only(repo: Repository, src: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """The root tree of a backup that reads every small file on the engine thread."""
    with monkeypatch.context() as m:
        m.setattr(archiver_module, "INLINE_FILES", 1 << 30)
        m.setattr(source_reader.SourceReader, "__init__", _must_not_start)
        return back_up(repo, src)


def _must_not_start(self: source_reader.SourceReader, level: int) -> None:
    raise AssertionError("a helper was started")


def helpers_started(monkeypatch: pytest.MonkeyPatch, code: str | None = None) -> list[int]:
    """PIDs of the helpers started from now on; with `code`, each runs that
    program instead of the real one."""
    started: list[int] = []
    real_start = helper_process.start

    def start(module: str) -> subprocess.Popen[bytes]:
        if code is None:
            proc = real_start(module)
        else:
            pipe = subprocess.PIPE
            proc = subprocess.Popen([sys.executable, "-c", code], stdin=pipe, stdout=pipe)
        started.append(proc.pid)
        return proc

    monkeypatch.setattr(helper_process, "start", start)
    return started


def test_the_helper_stores_what_the_engine_stores(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same snapshot tree, to the byte, whoever read the files; each
    small file's one blob is its content's id and reads back as its bytes,
    compressed (by the helper) where that pays."""
    src = tmp_path / "src"
    make_tree(src)
    started = helpers_started(monkeypatch)
    tree = back_up(repo, src)
    assert len(started) == 1  # after the first INLINE_FILES small files
    assert not Path(f"/proc/{started[0]}").exists()  # ended with the backup
    nodes = files_in(repo, tree)
    small = list(src.rglob("f*"))
    assert len(small) == FILES
    repo.load_index()
    codecs = []
    for path in small:
        node = nodes[os.fsencode(path)]
        data = path.read_bytes()
        assert node.content == (blob_id(repo.keys.id, data),)
        assert node.size == len(data)
        assert repo.read_blob(node.content[0]) == data
        codecs.append(repo.index[node.content[0]].entry.codec)
        assert dict(node.xattrs) == {k.encode(): os.getxattr(path, k) for k in os.listxattr(path)}
    assert Codec.ZSTD in codecs
    assert Codec.RAW in codecs
    trees = tree_ids(repo, tree)
    assert len(trees) > FILES // 150
    for tid in trees:  # cached, most by the helper, each whole by the time the backup ended
        assert blob_id(repo.keys.id, Path(repo.tree_cache_path(tid)).read_bytes()) == tid
    assert engine_only(repo, src, monkeypatch) == tree


def test_a_small_file_is_one_chunk_and_a_batch_is_bounded_in_bytes(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one-pass path stores a file as one blob, so no file it takes may
    be one FastCDC would cut; and a request to the helper carries at most
    BATCH_FILES files or about BATCH_BYTES of them, whichever comes first."""
    assert SMALL_FILE_MAX <= CHUNK_MIN
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(5)
    sizes = [60 * 1024 + n for n in range(2 * INLINE_FILES)] + [100] * (3 * source_reader.BATCH_FILES)
    for n, size in enumerate(sizes):
        (src / f"f{n:04}").write_bytes(rng.randbytes(size))
    sent: list[int] = []
    real_read = source_reader.SourceReader.read

    def read(self: source_reader.SourceReader, batch: list[tuple[bytes, int, int]]) -> object:
        sent.append(sum(size for _, size, _ in batch))
        assert len(batch) <= source_reader.BATCH_FILES
        return real_read(self, batch)

    monkeypatch.setattr(source_reader.SourceReader, "read", read)
    tree = back_up(repo, src)
    assert sent  # the helper read some (64 files of 60 KiB: 3.8 MiB in one request, without the bound)
    assert max(sent) < source_reader.BATCH_BYTES + SMALL_FILE_MAX
    nodes = files_in(repo, tree)
    for path in src.iterdir():
        assert nodes[os.fsencode(path)].content == (blob_id(repo.keys.id, path.read_bytes()),)


def test_answers_that_come_late_still_land_in_their_own_directory(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A helper that waits before each answer: the walk runs far ahead
    (trees of later directories are queued while earlier answers are still
    out), and every tree still holds its own files."""
    src = tmp_path / "src"
    make_tree(src)
    expected = engine_only(repo, src, monkeypatch)
    slow = (  # the real helper, a little slower at every file
        "import time\n"
        "from keep.client.engine import source_reader as r\n"
        "real = r.read_small\n"
        "def slow(*args):\n"
        "    time.sleep(0.0005)\n"
        "    return real(*args)\n"
        "r.read_small = slow\n"
        "r.main()\n"
    )
    started = helpers_started(monkeypatch, slow)
    waiting: list[int] = []
    real_read = source_reader.SourceReader.read

    def read(self: source_reader.SourceReader, batch: list[tuple[bytes, int, int]]) -> object:
        waiting.append(len(self._waiting))
        return real_read(self, batch)

    monkeypatch.setattr(source_reader.SourceReader, "read", read)
    assert back_up(repo, src) == expected
    assert len(started) == 1
    assert max(waiting) >= 5  # batches of several directories were out at once


def test_a_helper_that_dies_stops_the_backup_with_one_error_and_no_snapshot(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It answers one batch, then exits: the backup cannot know what the
    rest hold, so it stops, names the helper and writes no snapshot; the
    next backup stores everything."""
    src = tmp_path / "src"
    make_tree(src)
    dying = (  # the real helper, gone after its first answer
        "import sys\n"
        "from keep.client.engine import source_reader as r\n"
        "real = r.write_frame\n"
        "def once(out, message):\n"
        "    real(out, message)\n"
        "    sys.exit(9)\n"
        "r.write_frame = once\n"
        "r.main()\n"
    )
    with monkeypatch.context() as m:
        started = helpers_started(m, dying)
        threads = set(threading.enumerate())
        with pytest.raises(source_reader.ReaderStoppedError) as stopped:
            back_up(repo, src)
    assert len(started) == 1
    assert str(stopped.value).startswith("the helper process reading small files stopped (exit status 9)")
    assert "\n" not in str(stopped.value)
    assert repo.snapshots() == []
    assert set(threading.enumerate()) <= threads  # the backup's pool ended with it
    assert back_up(repo, src) == engine_only(repo, src, monkeypatch)


def test_a_helper_that_cannot_start_leaves_the_reading_to_the_engine(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    make_tree(src)
    expected = engine_only(repo, src, monkeypatch)
    tries: list[str] = []

    def cannot(module: str) -> subprocess.Popen[bytes]:
        tries.append(module)
        raise BlockingIOError(11, "Resource temporarily unavailable")  # fork refused

    monkeypatch.setattr(helper_process, "start", cannot)
    assert back_up(repo, src) == expected
    assert tries == ["keep.client.engine.source_reader"]  # tried once, not per file


def test_a_backup_that_stops_with_answers_out_ends_its_helper_at_once(tmp_path: Path) -> None:
    """The engine stops taking answers (the backup failed elsewhere) while
    more are out than the pipes hold: closing must not wait on a helper
    blocked writing them, and leaves no process behind."""
    for n in range(source_reader.BATCH_FILES * source_reader.MAX_BATCHES_OUT):
        (tmp_path / f"f{n:04}").write_bytes(bytes([n % 251]) * SMALL_FILE_MAX)
    files = sorted(tmp_path.iterdir())
    reader = source_reader.SourceReader(DATA_LEVEL)
    pid = reader._proc.pid
    for start in range(0, len(files), source_reader.BATCH_FILES):
        batch = files[start : start + source_reader.BATCH_FILES]
        reader.read([(os.fsencode(p), SMALL_FILE_MAX, p.stat().st_ino) for p in batch])
    # More than both pipes hold is written or waiting to be: the helper is blocked.
    assert SMALL_FILE_MAX * len(files) > 2 * helper_process.PIPE_SIZE
    closing = threading.Thread(target=reader.close, daemon=True)
    closing.start()
    closing.join(timeout=20)
    if closing.is_alive():
        os.kill(pid, signal.SIGKILL)  # ours: let the test end
        pytest.fail("closing waited on a helper that cannot finish writing")
    assert not Path(f"/proc/{pid}").exists()


def test_a_request_larger_than_the_pipe_is_sent_while_answers_are_taken(tmp_path: Path) -> None:
    """Tree cache files bigger than the helper's stdin pipe, sent while it is
    blocked writing answers the engine has not taken yet: sending takes them
    meanwhile (a blocking write would wait for ever on a helper waiting on
    it), every answer arrives whole, and the file is written."""
    files = []
    for n in range(source_reader.BATCH_FILES * source_reader.MAX_BATCHES_OUT):
        path = tmp_path / f"f{n:04}"
        path.write_bytes(random.Random(n).randbytes(SMALL_FILE_MAX))
        files.append(path)
    reader = source_reader.SourceReader(DATA_LEVEL)
    out = []
    for start in range(0, len(files), source_reader.BATCH_FILES):
        batch = files[start : start + source_reader.BATCH_FILES]
        out.append(reader.read([(os.fsencode(p), SMALL_FILE_MAX, p.stat().st_ino) for p in batch]))
    tree = random.Random(0).randbytes(3 * helper_process.PIPE_SIZE)
    cached = tmp_path / "cache" / "ab" / "abcd"
    sending = threading.Thread(target=reader.cache, args=(str(cached), tree), daemon=True)
    sending.start()
    sending.join(timeout=30)
    if sending.is_alive():
        os.kill(reader._proc.pid, signal.SIGKILL)  # ours: let the test end
        pytest.fail("sending waited on a helper that waits on it")
    answers = [answer for batch in out for answer in batch.result()]
    assert [a[1] for a in answers] == [p.read_bytes() for p in files]
    reader.close()
    assert cached.read_bytes() == tree
    assert cached.stat().st_mode & 0o777 == 0o600
