"""Repository lock leases held for the duration of a command.

A backup holds a shared lease, prune an exclusive one. A background thread
renews the lease well before it expires; a crashed client's lease simply
expires on the server, so stale locks never need manual removal.
"""

from __future__ import annotations

import contextlib
import threading
from types import TracebackType

from keep.client.remote import Remote
from keep.protocol.errors import KeepError

LEASE_TTL = 300  # seconds
RENEW_EVERY = 60


class Lease:
    def __init__(self, remote: Remote, exclusive: bool) -> None:
        self._remote = remote
        self._exclusive = exclusive
        self._id: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="keep-lease", daemon=True)

    def __enter__(self) -> Lease:
        reply = self._remote.request_json(
            "POST", "/v1/locks", {"exclusive": self._exclusive, "ttl": LEASE_TTL}
        )
        self._id = str(reply["id"])
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_EVERY):
            # A failed renewal is retried on the next tick; expiry is the fallback.
            with contextlib.suppress(KeepError):
                self._remote.request_json("PUT", f"/v1/locks/{self._id}", {"ttl": LEASE_TTL})

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._id is not None:
            with contextlib.suppress(KeepError):  # the lease expires on its own
                self._remote.request_json("DELETE", f"/v1/locks/{self._id}", ok=(204, 404), retry=False)
