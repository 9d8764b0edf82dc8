"""One malloc arena for the whole `keep` process.

glibc gives each new thread a malloc arena of its own (up to eight per
core), and memory freed into an arena is reused only by the threads
allocating from it. A backup's compression workers and uploads, and a
restore's fetch threads, each allocate blob-sized buffers, so each arena
kept a high-water mark of its own. With one arena a full restore of a
1 GB corpus peaked at 62.5 instead of 76.8 MiB (12 verified pairs, 1.02x
the time: noise), a first backup of it at 77.6 instead of 80.6 MiB
(benchmarks/RESULTS.md). Python makes most of its allocations holding the
interpreter lock anyway, so the threads hardly ever wait for the arena's.

Set once, before the command starts any thread. An operator's own
MALLOC_ARENA_MAX (or glibc tunable) is left as it is, and a C library other
than glibc is left alone.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_ARENA_MAX = -8  # glibc's <malloc.h>


def is_glibc() -> bool:
    """Whether this process runs on glibc."""
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):  # a C library that does not know the name
        return False


def use_one_arena() -> bool:
    """Limit glibc's malloc to one arena; whether it was done."""
    if sys.platform != "linux" or "MALLOC_ARENA_MAX" in os.environ:
        return False
    if "glibc.malloc.arena_max" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    if not is_glibc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, 1))
