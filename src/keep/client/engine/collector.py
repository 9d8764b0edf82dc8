"""Python's cyclic garbage collector, paused while a command builds large,
long-lived state.

Loading the index and restoring build an object per blob or per file that
lives until the command ends, and every full collection walks all of them
again: 100,000 small files cost ~10 full collections of ~0.1 s each in a
restore, and planning one took 0.75 s with the collector on against 0.30 s
off; loading an index of 108,000 entries ran 45 ms of collections. Neither
makes cyclic garbage worth collecting on the way (a restore of those
100,000 files left 32 cyclic objects, counted with `gc.collect()` at its
end), so nothing accumulates meanwhile.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """The collector off for the body, and on again after (if it was on),
    however the body ends. Pauses nest."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
