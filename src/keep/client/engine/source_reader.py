"""Reading a backup's small files, in the engine or in a helper process.

A file of at most 64 KiB is read in one pass (`read_small`): opened
non-blocking, one `read`, one `fstat` (still the regular file and the inode
the walk's lstat saw), its extended attributes through the descriptor, closed.
Those five system calls are most of what such a file costs the engine thread
beyond identifying, compressing and sealing its one chunk: a first backup of
100,000 files of 0.1-2 KB ran 4.5-4.7 s with them and 3.5-3.8 s with the
bytes handed to it. A thread cannot take them over: each call gives up the
interpreter lock and must win it back from the engine thread, which computes
(see `file_writer` for what that cost restores). So once a backup has read
`INLINE_FILES` small files itself — enough to show that a tree of them is
coming, few enough that a backup changing a few files never pays for a
helper's start (~40 ms) — it starts one helper process, `python -m
keep.client.engine.source_reader`, and sends it the paths in batches. Each
batch's `Answers` takes its turn in the chunk pipeline's queue, so the engine
walks on while the helper reads; the engine thread takes the answers off the
pipe itself when it looks at them (a thread of ours receiving them would
have to win the interpreter lock from the engine for every batch).

The helper holds no key and opens no connection: it is given the zstd
level, then paths, sizes and inode numbers, and answers with what it read —
the bytes, the mtime the open file had, its extended attributes, and the
bytes compressed as the engine would have (zstd took 14 % of the engine
thread's time on those 100,000 files) — or the error that stopped it. It
reads nothing the engine would not have read, as the same user. It is
started, and talks, as every helper does (`helper_process`), and ignores
interrupts: the backup decides when to stop.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import stat
import subprocess
from collections import deque
from typing import Any

import msgpack

from keep.client.engine import helper_process
from keep.client.engine.cache_file import write_new
from keep.client.engine.helper_process import LENGTH, pipes, read_frame, write_frame
from keep.protocol.compression import BlobCompressor, Codec
from keep.protocol.errors import KeepError

O_NOATIME = getattr(os, "O_NOATIME", 0)
INLINE_FILES = 256  # small files the engine reads itself before it starts a helper
BATCH_FILES = 64  # paths per request to the helper...
BATCH_BYTES = 512 * 1024  # ...or fewer, once their sizes add up to this
MAX_BATCHES_OUT = 16  # requests sent and not yet answered
CACHE_BYTES = 256 * 1024  # tree cache files gathered before they are sent on their own
CLOSE_WAIT = 5.0  # seconds a helper has to exit once the backup ends

Xattrs = tuple[tuple[bytes, bytes], ...]
# What reading one small file gave: (0, data, mtime_ns, xattrs, codec, packed),
# or (errno, strerror). codec is None where nothing was compressed (the
# engine compresses), else the `Codec` chosen, with packed its zstd frame or
# None for RAW.
Answer = tuple[Any, ...]


def open_source(path: bytes) -> int:
    """A source file opened for reading: not through a link, without
    touching its access time where allowed, and non-blocking, so that a FIFO
    or device put in its place since it was listed cannot stall the backup
    (regular files ignore the flag)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        return os.open(path, flags | O_NOATIME)
    except PermissionError:
        if not O_NOATIME:
            raise
        return os.open(path, flags)  # O_NOATIME needs ownership


def replaced() -> OSError:
    return OSError(errno.ESTALE, "replaced while being opened")


def same_file(fd: int, ino: int) -> os.stat_result:
    """The open file's fstat, if it is still the regular file the walk's
    lstat saw (inode `ino`); else the error that makes it a warning."""
    fst = os.fstat(fd)
    if not stat.S_ISREG(fst.st_mode) or fst.st_ino != ino:
        raise replaced()
    return fst


def xattrs_of(where: bytes | int) -> Xattrs:
    """The extended attributes of a path (not followed if a link) or of an
    open descriptor (no path lookup: what `read_small` uses)."""
    follow = isinstance(where, int)  # follow_symlinks=False is refused with a descriptor
    try:
        names = os.listxattr(where, follow_symlinks=follow)
    except OSError:
        return ()
    if not names:
        return ()
    out = []
    for name in sorted(names):
        try:
            out.append((name.encode(), os.getxattr(where, name, follow_symlinks=follow)))
        except OSError:
            continue
    return tuple(out)


def read_small(path: bytes, size: int, ino: int, compressor: BlobCompressor | None = None) -> Answer:
    """Read a file the walk saw as `size` bytes (at most 64 KiB) at inode
    `ino`, in one pass, and with `compressor` compress what was read. At
    most size + 1 bytes are asked for, so a file that grew shows as a
    longer answer; the descriptor is checked after the read (opened
    non-blocking, a FIFO or device swapped in cannot stall it)."""
    try:
        fd = open_source(path)
        try:
            data = os.read(fd, size + 1)
            fst = same_file(fd, ino)
            xattrs = xattrs_of(fd)
        except IsADirectoryError:
            raise replaced() from None
        finally:
            os.close(fd)
    except OSError as exc:
        return (exc.errno or errno.EIO, exc.strerror or str(exc))
    if compressor is None or len(data) > size:  # one that grew is read again in full
        return (0, data, fst.st_mtime_ns, xattrs, None, None)
    codec, packed = compressor.compress(data)
    return (0, data, fst.st_mtime_ns, xattrs, codec, packed if codec is Codec.ZSTD else None)


def main() -> None:
    """The helper: the first frame is the zstd level of file data, every
    later one [batch or None, tree cache files]: the files ([path, data]) are
    written (`cache_file.write_new`; one that cannot be is left out: the
    cache is checked when read), then a batch of [path, size, inode] is
    answered with one `read_small` answer for each, compressed at that
    level."""
    inp, out, level = helper_process.begin()
    if not isinstance(level, int):
        return
    compressor = BlobCompressor(level)
    try:
        while (frame := read_frame(inp)) is not None:
            batch, files = frame
            for path, data in files:
                with contextlib.suppress(OSError):
                    write_new(path, data)
            if batch is not None:
                write_frame(out, [read_small(path, size, ino, compressor) for path, size, ino in batch])
    except BrokenPipeError:  # the backup stopped taking answers: it has ended
        os._exit(0)  # nothing to flush, and no second broken pipe at exit


# The backup's side ---------------------------------------------------------------
class ReaderStoppedError(KeepError):
    """The helper reading small files is gone: the backup cannot know what it
    would have read, so it stops (no snapshot is written; the next backup
    reuses every pack already uploaded)."""


class Answers:
    """The answers to one batch, taken from the helper's pipe by the engine
    thread itself when it asks (`done`, `result`): no thread of ours has to
    win the interpreter lock from the engine to pass them on."""

    __slots__ = ("_reader", "error", "value")

    def __init__(self, reader: SourceReader) -> None:
        self._reader = reader
        self.value: tuple[Answer, ...] | None = None
        self.error: ReaderStoppedError | None = None

    def done(self) -> bool:
        if self.value is None and self.error is None:
            self._reader.take(wait=False)
        return self.value is not None or self.error is not None

    def result(self) -> tuple[Answer, ...]:
        while True:
            if self.error is not None:
                raise self.error
            if self.value is not None:
                return self.value
            self._reader.take(wait=True)


class SourceReader:
    """One helper process, used from the engine thread only. `read` sends a
    batch and returns its `Answers` (at most MAX_BATCHES_OUT unanswered at a
    time); `cache` has it write a tree cache file, sent with the next batch
    or once CACHE_BYTES are waiting (`send_cache` sends the rest); `close`
    ends the helper. A request that does not fit in the pipe is sent while
    the answers are taken, so neither side can wait on the other."""

    def __init__(self, level: int) -> None:
        self._proc = helper_process.start("keep.client.engine.source_reader")
        stdin, stdout = pipes(self._proc)
        self._in = stdin.fileno()
        self._out = stdout.fileno()
        os.set_blocking(self._in, False)
        os.set_blocking(self._out, False)
        with contextlib.suppress(OSError):
            fcntl.fcntl(self._out, fcntl.F_SETPIPE_SZ, helper_process.PIPE_SIZE)
        # poll, not select: any descriptor number works
        self._answered = select.poll()  # answers to take
        self._answered.register(self._out, select.POLLIN)
        self._either = select.poll()  # answers to take, or room in the pipe to the helper
        self._either.register(self._out, select.POLLIN)
        self._either.register(self._in, select.POLLOUT)
        self._received = bytearray()
        self._waiting: deque[Answers] = deque()  # sent, not yet answered, oldest first
        self._files: list[tuple[str, bytes]] = []  # tree cache files not yet sent
        self._file_bytes = 0
        self._gone: ReaderStoppedError | None = None
        self._send(level)

    def read(self, batch: list[tuple[bytes, int, int]]) -> Answers:
        """Ask for [(path, size, inode)]; one answer each, in order."""
        while len(self._waiting) >= MAX_BATCHES_OUT and self._gone is None:
            self.take(wait=True)
        answers = Answers(self)
        if self._gone is not None:
            answers.error = self._gone
            return answers
        self._waiting.append(answers)
        self._send((batch, self._take_files()))
        return answers

    def cache(self, path: str, data: bytes) -> None:
        """Have the helper write a tree cache file (`cache_file.write_new`)."""
        self._files.append((path, data))
        self._file_bytes += len(data)
        if self._file_bytes >= CACHE_BYTES:
            self.send_cache()

    def send_cache(self) -> None:
        """Send the tree cache files still waiting (they need no answer)."""
        if self._files:
            self._send((None, self._take_files()))

    def _take_files(self) -> list[tuple[str, bytes]]:
        files, self._files, self._file_bytes = self._files, [], 0
        return files

    def _send(self, message: Any) -> None:
        data = memoryview(helper_process.frame(message))
        while self._gone is None:
            try:
                data = data[os.write(self._in, data) :]
            except BlockingIOError:
                pass
            except OSError:
                self._stopped()
                return
            if not data:
                return
            # The pipe is full: take answers while the helper empties it.
            self._either.poll()
            self.take(wait=False)

    def take(self, *, wait: bool) -> None:
        """Take the answers the helper has written so far; with `wait`, wait
        for at least some if there are none."""
        if self._gone is not None:
            return
        if wait:
            self._answered.poll()
        try:
            got = os.read(self._out, helper_process.PIPE_SIZE)
        except BlockingIOError:
            return
        except OSError:
            got = b""
        if not got:
            self._stopped()
            return
        buffer = self._received
        buffer += got
        start = 0
        while len(buffer) - start >= LENGTH.size:
            (length,) = LENGTH.unpack_from(buffer, start)
            end = start + LENGTH.size + length
            if end > len(buffer):
                break
            self._waiting.popleft().value = msgpack.unpackb(buffer[start + LENGTH.size : end], use_list=False)
            start = end
        del buffer[:start]

    def close(self) -> None:
        """End the helper and wait for it: it exits once its stdin closes,
        or, if it is still writing answers nobody will take (the backup
        failed elsewhere), once its stdout breaks; one stuck in a read is
        killed after CLOSE_WAIT seconds."""
        for stream in pipes(self._proc):
            with contextlib.suppress(OSError):
                stream.close()
        try:
            self._proc.wait(timeout=CLOSE_WAIT)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def _stopped(self) -> None:
        if self._gone is None:
            self._gone = ReaderStoppedError(
                f"the helper process reading small files stopped{_how(self._proc)}; nothing was stored "
                "for the files it had not answered, and no snapshot was written"
            )
        for answers in self._waiting:
            answers.error = self._gone
        self._waiting.clear()


def _how(proc: subprocess.Popen[bytes]) -> str:
    try:
        code = proc.wait(timeout=1)
    except subprocess.TimeoutExpired:
        return ""
    if code < 0:
        return f" (signal {-code})"
    return f" (exit status {code})" if code else ""


if __name__ == "__main__":
    main()
