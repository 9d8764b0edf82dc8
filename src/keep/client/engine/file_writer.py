"""Helper processes that write a restore's small files.

Restoring many small files is a run of system calls per file — create, write,
set owner, mode and times, close, link — with almost no work between them.
In the restoring process each of those calls gives up Python's global
interpreter lock and must win it back from the threads that are verifying
and decompressing blobs; a thread that computes holds the lock for up to the
switch interval, so a thread that makes system calls waits at every call
(measured on this project's VM: 30,000 files take 1.0 s alone and 542 s
beside one computing thread). So the restorer hands each file that is one
blob — verified, decompressed, final — to one of a few helper processes,
which have their own interpreters and do nothing else.

A helper holds no key and opens no connection: it is given plaintext and
where it goes, nothing more. It runs `python -m keep.client.engine.file_writer`,
reads batches from its stdin and answers each with what it wrote and what
failed. It writes each file in a directory it opens by path and accepts
only if it is still the directory the restorer made (device and inode):
without a name (or under a temporary name, created exclusively and never
through a symlink), then owner, extended attributes, mode and times through
the descriptor, then a link under the final name (or a rename over it;
`write_job`). It is started, and talks, as every helper does
(`helper_process`), and it ignores interrupts: the restorer decides when to
stop.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import subprocess
import threading
from collections.abc import Callable, Iterable
from typing import NamedTuple

from keep.client.engine import helper_process
from keep.client.engine.helper_process import pipes, read_frame, write_frame

HOLE_BLOCK = 64 * 1024  # zero runs of this size inside a blob stay holes
_ZERO_BLOCK = bytes(HOLE_BLOCK)
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Files per batch, or this much data, whichever comes first. Every batch is
# a pipe write by one thread and an answer read by another, and each of those
# threads must then win the interpreter lock back from one that computes (up
# to its 5 ms switch interval): 100,000 files in batches of 64 took 5.05 s,
# in batches of 512 4.81 s; with the walk running alongside, 5.56 and 4.74 s.
# More bytes per batch bought nothing and cost memory (4 MiB: a 1 GB restore
# peaked at 137 MiB, 120 MiB with 1 MiB).
BATCH_FILES = 512
BATCH_BYTES = 1 << 20


class Job(NamedTuple):
    """One file for a helper to write."""

    file: int  # the restorer's number for the file, given back in the answer
    parent: bytes  # its directory, relative to the target
    parent_id: tuple[int, int]  # that directory's (st_dev, st_ino)
    temp: bytes  # the temporary name to create in it
    name: bytes  # the final name
    data: bytes  # the whole content
    size: int
    mode: int
    owner: tuple[int, int] | None  # (uid, gid) to set, or None to leave it
    xattrs: tuple[tuple[bytes, bytes], ...]
    mtime_ns: int


def data_runs(data: bytes) -> list[tuple[int, int]]:
    """[start, end) runs of `data` that are not all-zero HOLE_BLOCKs; the file
    is truncated to its size, so skipped blocks stay sparse holes."""
    runs: list[tuple[int, int]] = []
    size = len(data)
    for start in range(0, size, HOLE_BLOCK):
        end = min(start + HOLE_BLOCK, size)
        # Compared in place (a memcmp that stops at the first difference):
        # copying each block out first cost 28 ms per GiB of data, this 5.
        zeros = _ZERO_BLOCK if end - start == HOLE_BLOCK else _ZERO_BLOCK[: end - start]
        if data.startswith(zeros, start, end):
            continue
        if runs and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], end)
        else:
            runs.append((start, end))
    return runs


def pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        data = data[n:]
        offset += n


def set_meta(
    where: bytes | int,
    mode: int | None,
    owner: tuple[int, int] | None,
    xattrs: Iterable[tuple[bytes, bytes]],
    mtime_ns: int,
) -> None:
    """Owner (if given), xattrs, mode (None for a symlink, which has none to
    set) and times of `where`: an open descriptor, or a path that is not
    followed if it is a symlink."""
    # A descriptor is never a symlink; a path is not followed. (Python
    # refuses follow_symlinks together with a descriptor.)
    follow = isinstance(where, int)
    if owner is not None:
        os.chown(where, *owner, follow_symlinks=follow)
    if mode is not None:
        for name, value in xattrs:
            try:
                os.setxattr(where, name, value, follow_symlinks=follow)
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP):
                    raise
        os.chmod(where, mode)
    os.utime(where, ns=(mtime_ns, mtime_ns), follow_symlinks=follow)


class DirectoryReplacedError(OSError):
    """A directory is no longer the one the restore made (device and inode)."""


def open_directory(target: bytes, parent: bytes, parent_id: tuple[int, int]) -> int:
    """Open `parent` (relative to `target`) by path, never through a final
    symlink, and only if it is still the directory with `parent_id`
    (st_dev, st_ino): a local process swapping in a symlink meanwhile is refused."""
    fd = os.open(os.path.join(target, parent) if parent else target, DIR_FLAGS)
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != parent_id:
        os.close(fd)
        raise DirectoryReplacedError(errno.ESTALE, "the directory was replaced during the restore")
    return fd


# The helper ------------------------------------------------------------------------
class _Directories:
    """The helper's open directory: jobs come grouped by directory, so one
    stays open until a job names another."""

    def __init__(self, target: bytes) -> None:
        self.target = target
        self.key: tuple[bytes, tuple[int, int]] | None = None
        self.fd = -1

    def open(self, parent: bytes, parent_id: tuple[int, int]) -> int:
        if self.key != (parent, parent_id):
            self.close()
            self.fd = open_directory(self.target, parent, parent_id)
            self.key = (parent, parent_id)
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.key, self.fd = None, -1


def write_job(dirs: _Directories, job: Job) -> None:
    """Write one file and give it its final name only once it is complete;
    on failure nothing of it is left.

    The file is made without a name (`O_TMPFILE`) and linked in under its
    final name when complete: one directory entry instead of a temporary one
    that a rename then moves (measured: 34 against 40 µs a file, system time
    most of it), and a restore killed part-way leaves no partial file behind.
    Where the name is taken meanwhile (a file being replaced), or the file
    system has no unnamed files, it is written under its temporary name and
    renamed over the final one, as files of several blobs are."""
    dir_fd = dirs.open(job.parent, job.parent_id)
    fd = _open_unnamed(dir_fd)
    if fd is not None:
        try:
            _fill(fd, job)
            try:
                os.link(b"/proc/self/fd/%d" % fd, job.name, dst_dir_fd=dir_fd, follow_symlinks=True)
                return
            except FileExistsError:
                os.link(b"/proc/self/fd/%d" % fd, job.temp, dst_dir_fd=dir_fd, follow_symlinks=True)
        finally:
            os.close(fd)
    else:
        fd = os.open(job.temp, CREATE_FLAGS, 0o600, dir_fd=dir_fd)
        try:
            try:
                _fill(fd, job)
            finally:
                os.close(fd)
        except BaseException:
            _unlink_quietly(job.temp, dir_fd)
            raise
    try:
        os.rename(job.temp, job.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        _unlink_quietly(job.temp, dir_fd)
        raise


def _fill(fd: int, job: Job) -> None:
    """The file's data (all-zero blocks left as holes), then its metadata."""
    runs = data_runs(job.data)
    view = memoryview(job.data)
    for start, end in runs:
        pwrite_all(fd, view[start:end], start)
    if not runs or runs[-1][1] < job.size:  # ends in a hole
        os.ftruncate(fd, job.size)
    set_meta(fd, job.mode, job.owner, job.xattrs, job.mtime_ns)


_UNNAMED = os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC
# Linking an unnamed file in goes through its /proc/self/fd entry (linkat
# with AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH).
_unnamed_files = os.path.isdir("/proc/self/fd")


def _open_unnamed(dir_fd: int) -> int | None:
    """A new file without a name in the directory, or None where the file
    system (or the kernel) cannot make one."""
    global _unnamed_files  # noqa: PLW0603 — learnt once per process
    if not _unnamed_files:
        return None
    try:
        return os.open(".", _UNNAMED, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise
        _unnamed_files = False
        return None


def _unlink_quietly(name: bytes, dir_fd: int) -> None:
    with contextlib.suppress(OSError):  # best effort: the restorer removes what is left too
        os.unlink(name, dir_fd=dir_fd)


def main() -> None:
    """The helper: the first frame is the target directory, every later one
    a batch of jobs, answered with [[file numbers written], [[file number,
    errno, strerror] of each that failed]]."""
    inp, out, target = helper_process.begin()
    if not isinstance(target, bytes):
        return
    dirs = _Directories(target)
    while (batch := read_frame(inp)) is not None:
        written: list[int] = []
        failed: list[tuple[int, int, str]] = []
        for fields in batch:
            job = Job(*fields)
            try:
                write_job(dirs, job)
            except OSError as exc:
                failed.append((job.file, exc.errno or 0, exc.strerror or str(exc)))
            else:
                written.append(job.file)
        write_frame(out, (written, failed))
    dirs.close()


# The restorer's side -------------------------------------------------------------
Written = Callable[[int], None]
Failed = Callable[[int, OSError], None]


class InlineWriter:
    """The calling threads write the files themselves: for restores of a few
    small files, where starting helpers would cost more than it saves."""

    def __init__(self, target: bytes, written: Written, failed: Failed) -> None:
        self._target, self._written, self._failed = target, written, failed
        self._local = threading.local()
        self._opened: list[_Directories] = []
        self._lock = threading.Lock()

    def write(self, job: Job) -> None:
        dirs: _Directories | None = getattr(self._local, "dirs", None)
        if dirs is None:
            dirs = self._local.dirs = _Directories(self._target)
            with self._lock:
                self._opened.append(dirs)
        try:
            write_job(dirs, job)
        except OSError as exc:
            self._failed(job.file, exc)
        else:
            self._written(job.file)

    def close(self, *, abandon: bool = False) -> None:
        for dirs in self._opened:
            dirs.close()


class HelperWriters:
    """`count` helper processes and the threads that feed them. `write`
    queues a job (blocking while the helpers are busy); `written(index)` and
    `failed(index, OSError)` are called from this object's threads as the
    answers come; `close` sends what is left (or, with `abandon`, drops
    it), waits for every answer and for the helpers to exit."""

    def __init__(self, target: bytes, count: int, written: Written, failed: Failed) -> None:
        self._written, self._failed = written, failed
        self._lock = threading.Lock()
        self._batch: list[Job] = []
        self._batch_bytes = 0
        self._queue: queue.Queue[list[Job] | None] = queue.Queue(maxsize=2 * count)
        self._threads: list[threading.Thread] = []
        self._helpers: list[subprocess.Popen[bytes]] = []
        try:
            for _ in range(count):
                self._helpers.append(_start_helper(target))
        except BaseException:  # no thread runs yet: end the helpers that did start
            for proc in self._helpers:
                pipes(proc)[0].close()
                proc.wait()
            raise
        for proc in self._helpers:
            in_flight: queue.Queue[list[int] | None] = queue.Queue()
            for work in (self._send, self._receive):
                thread = threading.Thread(target=work, args=(proc, in_flight), name="keep-restore-feed")
                thread.start()
                self._threads.append(thread)

    def write(self, job: Job) -> None:
        with self._lock:
            self._batch.append(job)
            self._batch_bytes += len(job.data)
            if len(self._batch) < BATCH_FILES and self._batch_bytes < BATCH_BYTES:
                return
            batch, self._batch, self._batch_bytes = self._batch, [], 0
        self._queue.put(batch)

    def close(self, *, abandon: bool = False) -> None:
        with self._lock:
            batch, self._batch = self._batch, []
        if abandon:
            batch = []
            with contextlib.suppress(queue.Empty):
                while True:
                    self._queue.get_nowait()
        if batch:
            self._queue.put(batch)
        for _ in self._helpers:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
        for proc in self._helpers:
            proc.wait()

    def _send(self, proc: subprocess.Popen[bytes], in_flight: queue.Queue[list[int] | None]) -> None:
        """Feed one helper. Once it cannot take more (it exited), keep taking
        batches and fail their files, so nothing waits on the queue."""
        stdin, _ = pipes(proc)
        broken = False
        while (batch := self._queue.get()) is not None:
            if broken:
                self._lost([job.file for job in batch])
                continue
            in_flight.put([job.file for job in batch])
            try:
                write_frame(stdin, batch)  # a Job packs as the list of its fields
            except OSError:
                broken = True  # the receiver fails the batch it was told of
        in_flight.put(None)
        with contextlib.suppress(OSError):
            stdin.close()

    def _receive(self, proc: subprocess.Popen[bytes], in_flight: queue.Queue[list[int] | None]) -> None:
        _, stdout = pipes(proc)
        gone = False
        while (indexes := in_flight.get()) is not None:
            answer = None if gone else read_frame(stdout)
            if answer is None:
                gone = True
                self._lost(indexes)
                continue
            written, failed = answer
            for index in written:
                self._written(index)
            for index, code, message in failed:
                self._failed(index, OSError(code, message))
        stdout.close()

    def _lost(self, indexes: list[int]) -> None:
        for index in indexes:
            self._failed(index, OSError(errno.EPIPE, "the file-writing helper process exited"))


def _start_helper(target: bytes) -> subprocess.Popen[bytes]:
    proc = helper_process.start("keep.client.engine.file_writer")
    write_frame(pipes(proc)[0], target)
    return proc


if __name__ == "__main__":
    main()
