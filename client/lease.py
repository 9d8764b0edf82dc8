"""Repository lock leases held for the duration of a command.

A backup holds a shared lease, prune a "prune" one (which runs beside
backups; docs/engine.md "Prune"). A background thread renews the lease well
before it expires; a crashed client's lease simply expires on the server, so
stale locks never need manual removal. `confirm()` renews synchronously and
raises if the lease was lost: a backup calls it before writing its snapshot,
because a prune may delete what a backup without a live lease relied on.
"""

from __future__ import annotations

import contextlib
import threading
from types import TracebackType

from keep.client.remote import Remote
from keep.protocol.errors import KeepError, LeaseLostError, NotFoundError

LEASE_TTL = 300  # seconds
RENEW_EVERY = 60


class Lease:
    def __init__(self, remote: Remote, mode: str = "shared") -> None:
        self._remote = remote
        self._mode = mode
        self.created = 0  # server time the lease was granted
        self._id: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="keep-lease", daemon=True)

    def __enter__(self) -> Lease:
        reply = self._remote.request_json("POST", "/v1/locks", {"mode": self._mode, "ttl": LEASE_TTL})
        self._id = str(reply["id"])
        self.created = int(reply["created"])
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_EVERY):
            # A failed renewal is retried on the next tick; expiry is the fallback.
            with contextlib.suppress(KeepError):
                self._remote.request_json("PUT", f"/v1/locks/{self._id}", {"ttl": LEASE_TTL})

    @property
    def lease_id(self) -> str | None:
        return self._id

    def confirm(self) -> None:
        """Renew now; raise LeaseLostError if the server let the lease expire."""
        try:
            self._remote.request_json("PUT", f"/v1/locks/{self._id}", {"ttl": LEASE_TTL})
        except NotFoundError:
            raise LeaseLostError(
                "this command's repository lease expired (was the network down for minutes?); "
                "nothing was lost, run it again"
            ) from None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._id is not None:
            with contextlib.suppress(KeepError):  # the lease expires on its own
                self._remote.request_json("DELETE", f"/v1/locks/{self._id}", ok=(204, 404), retry=False)
