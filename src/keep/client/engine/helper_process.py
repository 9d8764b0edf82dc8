"""What the engine's helper processes share: how one is started and how
frames cross its pipes.

A helper (`file_writer` for restores, `source_reader` for backups) runs
`python -m <its module>`, reads frames from its stdin and answers each on
its stdout, in order. A frame is a 4-byte big-endian length, then msgpack.
A helper holds no key and opens no connection, is started without any of
keep's settings in its environment (a password may be among them), runs in
a process group of its own (a terminal's Ctrl-C goes to the keep command
alone, which decides when to stop) and exits when its stdin closes, so it
never outlives the command that started it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import struct
import subprocess
import sys
from typing import IO, Any

import msgpack

PIPE_SIZE = 1 << 20  # a batch or two waits in the pipe while the helper works on one
LENGTH = struct.Struct(">I")


def read_frame(stream: IO[bytes]) -> Any:
    """The next frame's message, or None once the other side has gone."""
    head = stream.read(LENGTH.size)
    if len(head) < LENGTH.size:
        return None
    (length,) = LENGTH.unpack(head)
    body = stream.read(length)
    if len(body) < length:
        return None
    return msgpack.unpackb(body, use_list=False)


def frame(message: Any) -> bytes:
    """`message` as one frame, ready for a pipe."""
    body = msgpack.packb(message)
    return LENGTH.pack(len(body)) + body


def write_frame(stream: IO[bytes], message: Any) -> None:
    stream.write(frame(message))
    stream.flush()


def start(module: str) -> subprocess.Popen[bytes]:
    """`python -m module` with pipes on its stdin and stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEP_")}
    # Its own process group even while it is still starting (before it
    # ignores SIGINT).
    proc = subprocess.Popen(
        [sys.executable, "-m", module],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        process_group=0,
    )
    stdin, _ = pipes(proc)
    with contextlib.suppress(OSError):  # the default 64 KiB works, a little slower
        fcntl.fcntl(stdin.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    return proc


def begin() -> tuple[IO[bytes], IO[bytes], Any]:
    """The helper's side, as it starts: interrupts ignored (the command that
    started it decides when to stop), its stdin and stdout as streams, and
    its first frame (what it is set up with), or None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    inp, out = os.fdopen(0, "rb", buffering=PIPE_SIZE), os.fdopen(1, "wb")
    return inp, out, read_frame(inp)


def pipes(proc: subprocess.Popen[bytes]) -> tuple[IO[bytes], IO[bytes]]:
    """A helper's stdin and stdout (both are always pipes)."""
    if proc.stdin is None or proc.stdout is None:
        raise RuntimeError("a helper process was started without its pipes")
    return proc.stdin, proc.stdout
