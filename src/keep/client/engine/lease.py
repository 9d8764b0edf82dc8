"""Repository lock leases held for the duration of a command, and what the
owner is told about them.

A backup holds a shared lease, prune a "prune" one (which runs beside
backups; docs/engine.md "Prune"). A background thread renews the lease well
before it expires; a crashed client's lease simply expires on the server.
`confirm()` renews synchronously and raises if the lease was lost: a backup
calls it before writing its snapshot, because a prune may delete what a
backup without a live lease relied on.

Each lease names a sealed LOCK object (protocol/lock.py) saying which host,
user and process holds it and for what, so a refused command can say who is
in the way and `keep unlock` can tell a dead holder from a live one. The
server sees only the lease's mode and times.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from keep.client.device.state import process_alive
from keep.protocol.api import LOCK_CONFLICTS, Route, route_path
from keep.protocol.errors import (
    FormatError,
    IntegrityError,
    KeepError,
    LeaseLostError,
    LockedError,
    NotFoundError,
    QuotaExceededError,
)
from keep.protocol.lock import LockRecord

if TYPE_CHECKING:
    from keep.client.engine.repository import Repository

LEASE_TTL = 300  # seconds
RENEW_EVERY = 60
# A lease its holder has not renewed for this long is stale: a live holder
# renews every RENEW_EVERY seconds, so it has missed at least two renewals.
STALE_AFTER = 2 * RENEW_EVERY + 30
PURPOSES = {"shared": "backup", "prune": "prune", "exclusive": "forget"}


class Lease:
    def __init__(self, repo: Repository, mode: str = "shared", purpose: str | None = None) -> None:
        self._repo = repo
        self._remote = repo.remote
        self._mode = mode
        self._purpose = purpose or PURPOSES[mode]
        self.created = 0  # server time the lease was granted
        self._id: str | None = None
        self._path = ""  # of the lease, once granted
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="keep-lease", daemon=True)

    def __enter__(self) -> Lease:
        record = LockRecord(
            host=socket.gethostname(),
            user=getpass.getuser(),
            pid=os.getpid(),
            purpose=self._purpose,
            mode=self._mode,
            time_ns=time.time_ns(),
        )
        repo = self._repo
        try:
            holder = self._remote.put_object("lock", record.seal(repo.keys.data, repo.suite, repo.salt()))
        except QuotaExceededError:
            holder = ""  # a full account must still restore, check and prune: a lease without a description
        body = {"mode": self._mode, "ttl": LEASE_TTL, "holder": holder}
        try:
            reply = self._remote.request_json("POST", Route.LOCKS, body)
        except LockedError:
            raise LockedError(f"the repository is locked by {in_the_way(repo, self._mode)}") from None
        self._id = str(reply["id"])
        self._path = route_path(Route.LOCK, lock_id=self._id)
        self.created = int(reply["created"])
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_EVERY):
            # A failed renewal is retried on the next tick; expiry is the fallback.
            with contextlib.suppress(KeepError):
                self._remote.request_json("PUT", self._path, {"ttl": LEASE_TTL})

    @property
    def lease_id(self) -> str | None:
        return self._id

    def confirm(self) -> None:
        """Renew now; raise LeaseLostError if the server let the lease expire."""
        try:
            self._remote.request_json("PUT", self._path, {"ttl": LEASE_TTL})
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
                self._remote.request_json("DELETE", self._path, ok=(204, 404), retry=False)


@dataclass(frozen=True, slots=True)
class HeldLock:
    """A live lease as the owner sees it: the server's facts and, when its
    LOCK object opens, who holds it."""

    id: str
    mode: str
    principal: str  # the device id that took it, or "owner"
    created: int  # server time, epoch seconds
    expires: int
    record: LockRecord | None

    def silent_for(self, now: float) -> float:
        """Seconds since the holder last renewed (every lease is taken and
        renewed for LEASE_TTL)."""
        return now - (self.expires - LEASE_TTL)

    def stale(self, now: float) -> str | None:
        """Why this lease's holder is certainly gone, or None if it may be alive."""
        r = self.record
        if r is not None and r.host == socket.gethostname() and not process_alive(r.pid):
            return f"process {r.pid} no longer runs on this host"
        if self.silent_for(now) > STALE_AFTER:
            return f"not renewed for {int(self.silent_for(now))} s"
        return None

    def describe(self) -> str:
        r = self.record
        who = (
            f"{r.purpose} by {r.user}@{r.host} (pid {r.pid})"
            if r is not None
            else f"a {self.mode} lease with no description"
        )
        return (
            f"{who}, {'the owner' if self.principal == 'owner' else 'device ' + self.principal[:12]}, "
            f"since {_clock(self.created)}, until {_clock(self.expires)} unless renewed"
        )


def _clock(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def held_locks(repo: Repository) -> list[HeldLock]:
    """Every live lease on the account, with its holder's description."""
    reply = repo.remote.request_json("GET", Route.LOCKS)
    held = []
    for lease in reply.get("locks", []):
        record = None
        if holder := lease.get("holder"):
            with contextlib.suppress(KeepError, FormatError, IntegrityError):  # missing or not ours
                record = LockRecord.open(repo.keys.data, repo.remote.get_object("lock", holder))
        held.append(
            HeldLock(
                str(lease["id"]),
                str(lease["mode"]),
                str(lease.get("principal", "")),
                int(lease["created"]),
                int(lease["expires"]),
                record,
            )
        )
    return held


def in_the_way(repo: Repository, mode: str) -> str:
    """Who holds the leases a `mode` lease conflicts with, and what to do."""
    try:
        blocking = [h for h in held_locks(repo) if h.mode in LOCK_CONFLICTS[mode]]
    except KeepError:
        blocking = []
    if not blocking:
        return "another client (its lease has just ended: try again)"
    now = time.time()
    stale = [h for h in blocking if h.stale(now)]
    advice = (
        "; its holder is gone, so `keep unlock` (owner) removes it now"
        if len(stale) == len(blocking)
        else "; if that process has died, the lease ends by itself at that time"
    )
    return "; ".join(h.describe() for h in blocking) + advice
