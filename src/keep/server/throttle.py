"""Login slow-down policy (pure): how long a key must wait after failures.

Keys are per account name and per client address, hashed with the server
secret so the database holds neither names nor addresses in clear. After
`free` failures each further failure doubles the wait, capped at `max_delay`:
guessing slows to a crawl, and the owner is never locked out for good.
Failures older than a day are forgotten. Times are the server clock's whole
seconds, so a wait counts from the end of the second the last failure
happened in: never shorter than its delay (an attempt a moment after a
failure, in the next second, would otherwise find a 1 s wait over).
"""

from __future__ import annotations

import hashlib
import hmac

FORGET_AFTER = 86_400


def throttle_key(secret: bytes, scope: str, value: str) -> bytes:
    return hmac.new(secret, f"throttle/{scope}/{value}".encode(), hashlib.sha256).digest()


def wait_seconds(failures: int, last: int, now: int, free: int, max_delay: int) -> int:
    """Seconds until the next attempt is allowed (0 = now)."""
    if failures < free or now - last > FORGET_AFTER:
        return 0
    delay = min(max_delay, 2 ** (failures - free))
    return max(0, last + 1 + delay - now)
