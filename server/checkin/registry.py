"""The name registry of keep-checkin (SQLite, one thread, like keep-server's).

Per name it keeps only what the DNS needs and what authenticates updates: the
SHA-256 of the device's token, the current IPv4 and IPv6 address, and the
time of the last update (for rate limiting and the SOA serial). No history,
no client addresses beyond the published ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS names (
    name TEXT PRIMARY KEY, token_hash BLOB NOT NULL, ipv4 TEXT, ipv6 TEXT,
    created INTEGER NOT NULL, updated INTEGER NOT NULL, last_request INTEGER NOT NULL
);
"""


class NameTakenError(Exception):
    """Raised when a name is claimed twice."""


@dataclass(frozen=True, slots=True)
class Record:
    name: str
    ipv4: str | None
    ipv6: str | None
    updated: int
    last_request: int


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Registry:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="keep-checkin-db")
        self._db: sqlite3.Connection | None = None
        self.serial = 0  # max(updated): the zone's SOA serial, kept in memory for the DNS

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        db = self._db
        if db is None:
            raise RuntimeError("registry is not open")

        def call() -> T:
            with db:
                return fn(db)

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def open(self) -> None:
        def connect() -> sqlite3.Connection:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self._path, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
            return db

        self._db = await asyncio.get_running_loop().run_in_executor(self._executor, connect)
        self.serial = await self._run(
            lambda db: int(db.execute("SELECT COALESCE(MAX(updated), 0) FROM names").fetchone()[0])
        )

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await asyncio.get_running_loop().run_in_executor(self._executor, db.close)
        self._executor.shutdown(wait=True)

    async def claim(self, name: str, token: str, now: int) -> None:
        def op(db: sqlite3.Connection) -> None:
            try:
                db.execute(
                    "INSERT INTO names (name, token_hash, created, updated, last_request) VALUES (?,?,?,?,0)",
                    (name, token_hash(token), now, now),
                )
            except sqlite3.IntegrityError:
                raise NameTakenError(name) from None

        await self._run(op)
        self.serial = max(self.serial, now)

    async def authenticate(self, name: str, token: str) -> Record | None:
        """The record if `token` is the name's token, else None."""

        def op(db: sqlite3.Connection) -> tuple[bytes, Record] | None:
            row = db.execute(
                "SELECT token_hash, name, ipv4, ipv6, updated, last_request FROM names WHERE name = ?",
                (name,),
            ).fetchone()
            return None if row is None else (bytes(row[0]), Record(*row[1:]))

        found = await self._run(op)
        if found is None or not hmac.compare_digest(found[0], token_hash(token)):
            return None
        return found[1]

    async def exists(self, name: str) -> bool:
        return (
            await self._run(lambda db: db.execute("SELECT 1 FROM names WHERE name = ?", (name,)).fetchone())
            is not None
        )

    async def lookup(self, name: str) -> Record | None:
        def op(db: sqlite3.Connection) -> Record | None:
            row = db.execute(
                "SELECT name, ipv4, ipv6, updated, last_request FROM names WHERE name = ?", (name,)
            ).fetchone()
            return None if row is None else Record(*row)

        return await self._run(op)

    async def touch(self, name: str, now: int) -> None:
        await self._run(
            lambda db: db.execute("UPDATE names SET last_request = ? WHERE name = ?", (now, name))
        )

    async def set_addresses(self, name: str, ipv4: str | None, ipv6: str | None, now: int) -> None:
        await self._run(
            lambda db: db.execute(
                "UPDATE names SET ipv4 = ?, ipv6 = ?, updated = ?, last_request = ? WHERE name = ?",
                (ipv4, ipv6, now, now, name),
            )
        )
        self.serial = max(self.serial + 1, now)

    async def release(self, name: str) -> None:
        await self._run(lambda db: db.execute("DELETE FROM names WHERE name = ?", (name,)))
        self.serial += 1

    async def count(self) -> int:
        return int(await self._run(lambda db: db.execute("SELECT COUNT(*) FROM names").fetchone()[0]))
