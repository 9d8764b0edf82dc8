"""Writing one file of a content-addressed local cache (a tree under its id).

Such a file is checked against its name whenever it is read (a torn or
altered one is read from the server again and replaced), so it is created
in place under its final name: exclusively (never through a link, never over
a file already there), with no temporary name and no rename. Used by the
repository and by the backup's source-reading helper, which writes the
trees of a backup of many directories off the engine thread.
"""

from __future__ import annotations

import contextlib
import os

FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


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
