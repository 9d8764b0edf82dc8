"""Reading and writing one file of a content-addressed local cache (a tree
under its id).

Such a file is checked against its name whenever it is read (a torn or
altered one is read from the server again and replaced), so it is created
in place under its final name: exclusively (never through a link, never over
a file already there), with no temporary name and no rename. Used by the
repository and by the backup's source-reading helper, which writes the
trees of a backup of many directories off the engine thread.
"""

from __future__ import annotations

import contextlib
import errno
import os

FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def read(path: str, max_size: int) -> bytes | None:
    """What `path` holds, or None if there is no such file, it is a link, or
    it is larger than `max_size` (none of which the cache writes). One read
    of the size `fstat` gives: a file that changes meanwhile gives bytes
    that fail the check against the name, as a torn one does."""
    try:
        fd = os.open(path, READ_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP):
            return None
        raise
    try:
        size = os.fstat(fd).st_size
        return None if size > max_size else os.read(fd, size)
    finally:
        os.close(fd)


def write_new(path: str, data: bytes) -> None:
    """Create `path` (and its directory, mode 0700) holding `data`, mode
    0600; nothing if something is there already. A failed write removes
    what it created and raises."""
    try:
        try:
            fd = os.open(path, FLAGS, 0o600)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            fd = os.open(path, FLAGS, 0o600)
    except FileExistsError:
        return  # cached already (or something else is there: it is checked when read)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    finally:
        os.close(fd)
