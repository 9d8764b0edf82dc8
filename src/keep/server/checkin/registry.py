"""The name registry of keep-checkin, behind one interface with two backends
chosen by URL like keep-server's metadata: `sqlite:///path/checkin.db` (the
default, one thread) and `postgresql://…` (asyncpg, for several replicas).

Per name it keeps only what the DNS needs and what authenticates updates: the
SHA-256 of the device's token, the current IPv4 and IPv6 address, and the
times of the last change and the last request (rate limiting); and, for a
dyndns2 update that came too early, the addresses to publish when the rate
limit allows (`pending`: one row per name at most, so a flood cannot grow
it). No history, no client addresses beyond the published ones. A zone serial counts changes
for the SOA record.
"""

from __future__ import annotations

import abc
import hashlib
import hmac
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from keep.server.shared.sqlite_thread import SqliteThread

TABLES = """
CREATE TABLE IF NOT EXISTS names (
    name TEXT PRIMARY KEY, token_hash {blob} NOT NULL, ipv4 TEXT, ipv6 TEXT,
    created BIGINT NOT NULL, updated BIGINT NOT NULL, last_request BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS pending (
    name TEXT PRIMARY KEY, ipv4 TEXT, ipv6 TEXT, due BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS zone (id INTEGER PRIMARY KEY, serial BIGINT NOT NULL);
INSERT INTO zone (id, serial) VALUES (1, 1) ON CONFLICT DO NOTHING;
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


_NO_TOKEN = bytes(32)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Registry(abc.ABC):
    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def claim(self, name: str, token: str, now: int) -> None:
        """Register `name` with `token` (NameTakenError if it exists)."""

    @abc.abstractmethod
    async def _token_and_record(self, name: str) -> tuple[bytes, Record] | None: ...

    async def authenticate(self, name: str, token: str) -> Record | None:
        """The record if `token` is the name's token, else None."""
        found = await self._token_and_record(name)
        # An unknown name costs the same hash and comparison as a wrong token.
        matches = hmac.compare_digest(found[0] if found else _NO_TOKEN, token_hash(token))
        return found[1] if found and matches else None

    async def exists(self, name: str) -> bool:
        return await self._token_and_record(name) is not None

    async def lookup(self, name: str) -> Record | None:
        found = await self._token_and_record(name)
        return None if found is None else found[1]

    @abc.abstractmethod
    async def touch(self, name: str, now: int) -> None:
        """Record a request that changed nothing (for the rate limit)."""

    @abc.abstractmethod
    async def set_addresses(self, name: str, ipv4: str | None, ipv6: str | None, now: int) -> None: ...

    @abc.abstractmethod
    async def release(self, name: str) -> None: ...

    @abc.abstractmethod
    async def defer(self, name: str, ipv4: str | None, ipv6: str | None, due: int) -> None:
        """Publish these addresses at `due` (replacing an earlier deferred update)."""

    @abc.abstractmethod
    async def pending(self, name: str) -> tuple[str | None, str | None] | None:
        """The addresses deferred for `name`, if any."""

    @abc.abstractmethod
    async def take_due(self, now: int) -> list[tuple[str, str | None, str | None]]:
        """Deferred updates whose time has come, removed from the queue."""

    @abc.abstractmethod
    async def cancel_pending(self, name: str) -> None: ...

    @abc.abstractmethod
    async def serial(self) -> int:
        """The zone's SOA serial: grows with every change."""


def registry_from_url(url: str) -> Registry:
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        return SqliteRegistry(Path(urlsplit(url).path))
    if scheme in ("postgresql", "postgres"):
        return PostgresRegistry(url)
    raise ValueError(f"unsupported registry backend {scheme!r} (supported: sqlite, postgresql)")


_SELECT = "SELECT token_hash, name, ipv4, ipv6, updated, last_request FROM names WHERE name = "


def _prepare_sqlite(db: sqlite3.Connection) -> None:
    db.executescript(TABLES.format(blob="BLOB"))


class SqliteRegistry(Registry):
    def __init__(self, path: Path) -> None:
        self._db = SqliteThread(path, _prepare_sqlite, "keep-checkin-db")
        self._run = self._db.run

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

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

    async def _token_and_record(self, name: str) -> tuple[bytes, Record] | None:
        def op(db: sqlite3.Connection) -> tuple[bytes, Record] | None:
            row = db.execute(_SELECT + "?", (name,)).fetchone()
            return None if row is None else (bytes(row[0]), Record(*row[1:]))

        return await self._run(op)

    async def touch(self, name: str, now: int) -> None:
        sql = "UPDATE names SET last_request = ? WHERE name = ?"
        await self._run(lambda db: db.execute(sql, (now, name)))

    async def set_addresses(self, name: str, ipv4: str | None, ipv6: str | None, now: int) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE names SET ipv4 = ?, ipv6 = ?, updated = ?, last_request = ? WHERE name = ?",
                (ipv4, ipv6, now, now, name),
            )
            db.execute("UPDATE zone SET serial = serial + 1 WHERE id = 1")

        await self._run(op)

    async def release(self, name: str) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM names WHERE name = ?", (name,))
            db.execute("DELETE FROM pending WHERE name = ?", (name,))
            db.execute("UPDATE zone SET serial = serial + 1 WHERE id = 1")

        await self._run(op)

    async def defer(self, name: str, ipv4: str | None, ipv6: str | None, due: int) -> None:
        sql = (
            "INSERT INTO pending (name, ipv4, ipv6, due) VALUES (?,?,?,?) ON CONFLICT (name) "
            "DO UPDATE SET ipv4 = excluded.ipv4, ipv6 = excluded.ipv6, due = excluded.due"
        )
        await self._run(lambda db: db.execute(sql, (name, ipv4, ipv6, due)))

    async def pending(self, name: str) -> tuple[str | None, str | None] | None:
        sql = "SELECT ipv4, ipv6 FROM pending WHERE name = ?"
        row = await self._run(lambda db: db.execute(sql, (name,)).fetchone())
        return None if row is None else (row[0], row[1])

    async def take_due(self, now: int) -> list[tuple[str, str | None, str | None]]:
        def op(db: sqlite3.Connection) -> list[tuple[str, str | None, str | None]]:
            rows = db.execute("SELECT name, ipv4, ipv6 FROM pending WHERE due <= ?", (now,)).fetchall()
            db.executemany("DELETE FROM pending WHERE name = ?", [(r[0],) for r in rows])
            return [(r[0], r[1], r[2]) for r in rows]

        return await self._run(op)

    async def cancel_pending(self, name: str) -> None:
        await self._run(lambda db: db.execute("DELETE FROM pending WHERE name = ?", (name,)))

    async def serial(self) -> int:
        return int(
            await self._run(lambda db: db.execute("SELECT serial FROM zone WHERE id = 1").fetchone()[0])
        )


class PostgresRegistry(Registry):
    def __init__(self, url: str) -> None:
        self._url = url
        self._pool: Any = None

    @property
    def pool(self) -> Any:
        if self._pool is None:
            raise RuntimeError("registry is not open")
        return self._pool

    async def open(self) -> None:
        import asyncpg

        self._pool = await asyncpg.create_pool(self._url, min_size=1, max_size=10)
        async with self.pool.acquire() as db, db.transaction():
            await db.execute("SELECT pg_advisory_xact_lock(1801675109)")  # replicas starting together
            await db.execute(TABLES.format(blob="BYTEA"))

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def claim(self, name: str, token: str, now: int) -> None:
        import asyncpg

        try:
            await self.pool.execute(
                "INSERT INTO names (name, token_hash, created, updated, last_request) VALUES ($1,$2,$3,$4,0)",
                name,
                token_hash(token),
                now,
                now,
            )
        except asyncpg.UniqueViolationError:
            raise NameTakenError(name) from None

    async def _token_and_record(self, name: str) -> tuple[bytes, Record] | None:
        row = await self.pool.fetchrow(_SELECT + "$1", name)
        return None if row is None else (bytes(row[0]), Record(*row[1:]))

    async def touch(self, name: str, now: int) -> None:
        await self.pool.execute("UPDATE names SET last_request = $1 WHERE name = $2", now, name)

    async def set_addresses(self, name: str, ipv4: str | None, ipv6: str | None, now: int) -> None:
        async with self.pool.acquire() as db, db.transaction():
            await db.execute(
                "UPDATE names SET ipv4 = $1, ipv6 = $2, updated = $3, last_request = $3 WHERE name = $4",
                ipv4,
                ipv6,
                now,
                name,
            )
            await db.execute("UPDATE zone SET serial = serial + 1 WHERE id = 1")

    async def release(self, name: str) -> None:
        async with self.pool.acquire() as db, db.transaction():
            await db.execute("DELETE FROM names WHERE name = $1", name)
            await db.execute("DELETE FROM pending WHERE name = $1", name)
            await db.execute("UPDATE zone SET serial = serial + 1 WHERE id = 1")

    async def defer(self, name: str, ipv4: str | None, ipv6: str | None, due: int) -> None:
        await self.pool.execute(
            "INSERT INTO pending (name, ipv4, ipv6, due) VALUES ($1,$2,$3,$4) ON CONFLICT (name) "
            "DO UPDATE SET ipv4 = excluded.ipv4, ipv6 = excluded.ipv6, due = excluded.due",
            name,
            ipv4,
            ipv6,
            due,
        )

    async def pending(self, name: str) -> tuple[str | None, str | None] | None:
        row = await self.pool.fetchrow("SELECT ipv4, ipv6 FROM pending WHERE name = $1", name)
        return None if row is None else (row[0], row[1])

    async def take_due(self, now: int) -> list[tuple[str, str | None, str | None]]:
        # One replica takes each row: DELETE … RETURNING under row locks.
        rows = await self.pool.fetch("DELETE FROM pending WHERE due <= $1 RETURNING name, ipv4, ipv6", now)
        return [(r[0], r[1], r[2]) for r in rows]

    async def cancel_pending(self, name: str) -> None:
        await self.pool.execute("DELETE FROM pending WHERE name = $1", name)

    async def serial(self) -> int:
        return int(await self.pool.fetchval("SELECT serial FROM zone WHERE id = 1"))
