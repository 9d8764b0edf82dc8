"""PostgreSQL metadata store (`postgresql://user@host:port/db?pool_max=10`).

For operators who run several keep-server replicas: every replica talks to the
same database through an asyncpg pool. Schema migrations run at start, under
an advisory lock so that replicas starting together apply each one once.
Whatever must not interleave between replicas (the quota check of an upload,
lock acquisition) runs in a transaction that first locks the account's row
(`SELECT … FOR UPDATE`), so it is serialized per account, not globally.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg

from keep.protocol.api import LOCK_CONFLICTS
from keep.server.storage.metadata import (
    Account,
    AccountExistsError,
    AccountQuotaFullError,
    Device,
    Lease,
    LockConflictError,
    MetadataStore,
    ObjectRecord,
    Session,
    Throttle,
    Usage,
)
from keep.server.storage.objects import StorageFullError

MIGRATION_LOCK = 0x6B656570  # "keep": the advisory lock held while migrating
POOL_MAX_DEFAULT = 10

# Append only: each entry moves the schema from version i to i + 1.
MIGRATIONS = [
    """
    CREATE TABLE server_config (key TEXT PRIMARY KEY, value BYTEA NOT NULL);
    CREATE TABLE accounts (
        id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created BIGINT NOT NULL,
        auth_method INTEGER NOT NULL, kdf TEXT NOT NULL, salt BYTEA NOT NULL,
        auth_verifier BYTEA NOT NULL, recovery_verifier BYTEA, quota BIGINT,
        usage_bytes BIGINT NOT NULL DEFAULT 0, usage_objects BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE keyslots (
        account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        kind TEXT NOT NULL, slot TEXT NOT NULL, PRIMARY KEY (account_id, kind)
    );
    CREATE TABLE sessions (
        token_hash BYTEA PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        created BIGINT NOT NULL, expires BIGINT NOT NULL
    );
    CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        name TEXT NOT NULL, token_hash BYTEA NOT NULL UNIQUE, created BIGINT NOT NULL,
        last_seen BIGINT NOT NULL, revoked BIGINT
    );
    CREATE INDEX devices_account ON devices (account_id);
    CREATE TABLE objects (
        account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        kind TEXT NOT NULL, id TEXT NOT NULL, size BIGINT NOT NULL, created BIGINT NOT NULL,
        PRIMARY KEY (account_id, kind, id)
    );
    CREATE TABLE locks (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        mode TEXT NOT NULL, holder TEXT NOT NULL, created BIGINT NOT NULL, expires BIGINT NOT NULL
    );
    CREATE INDEX locks_account ON locks (account_id);
    CREATE TABLE throttle (key BYTEA PRIMARY KEY, failures INTEGER NOT NULL, last BIGINT NOT NULL);
    """,
    "ALTER TABLE locks ADD COLUMN principal TEXT NOT NULL DEFAULT ''",
]


def _dsn_and_pool_max(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    pool_max = int(query.pop("pool_max", [str(POOL_MAX_DEFAULT)])[0])
    rest = "&".join(f"{k}={v}" for k, values in query.items() for v in values)
    return urlunsplit(("postgresql", parts.netloc, parts.path, rest, "")), pool_max


class PostgresMetadataStore(MetadataStore):
    def __init__(self, url: str) -> None:
        self._dsn, self._pool_max = _dsn_and_pool_max(url)
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("metadata store is not open")
        return self._pool

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=self._pool_max)
        async with self.pool.acquire() as db:
            await db.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            try:
                await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                version = await db.fetchval("SELECT max(version) FROM schema_version") or 0
                for number, sql in enumerate(MIGRATIONS[version:], start=version + 1):
                    async with db.transaction():
                        await db.execute(sql)
                        await db.execute("INSERT INTO schema_version (version) VALUES ($1)", number)
            finally:
                await db.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _execute(self, sql: str, *args: Any) -> str:
        try:
            return str(await self.pool.execute(sql, *args))
        except asyncpg.DiskFullError:
            raise StorageFullError from None

    async def server_secret(self, candidate: bytes) -> bytes:
        await self._execute(
            "INSERT INTO server_config (key, value) VALUES ('secret', $1) ON CONFLICT DO NOTHING", candidate
        )
        return bytes(await self.pool.fetchval("SELECT value FROM server_config WHERE key = 'secret'"))

    # Accounts -------------------------------------------------------------
    async def create_account(self, account: Account, slots: dict[str, dict[str, Any]]) -> None:
        async with self.pool.acquire() as db, db.transaction():
            try:
                await db.execute(
                    "INSERT INTO accounts (id, name, created, auth_method, kdf, salt,"
                    " auth_verifier, recovery_verifier, quota) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
                    account.id,
                    account.name,
                    account.created,
                    account.auth_method,
                    json.dumps(account.kdf, sort_keys=True),
                    account.salt,
                    account.auth_verifier,
                    account.recovery_verifier,
                    account.quota,
                )
            except asyncpg.UniqueViolationError:
                raise AccountExistsError(account.name) from None
            await db.executemany(
                "INSERT INTO keyslots (account_id, kind, slot) VALUES ($1,$2,$3)",
                [(account.id, kind, json.dumps(slot, sort_keys=True)) for kind, slot in slots.items()],
            )

    _ACCOUNT_COLUMNS = (
        "SELECT id, name, created, auth_method, kdf, salt, auth_verifier,"
        " recovery_verifier, quota FROM accounts"
    )

    @staticmethod
    def _account(row: asyncpg.Record | None) -> Account | None:
        if row is None:
            return None
        return Account(
            id=row[0],
            name=row[1],
            created=row[2],
            auth_method=row[3],
            kdf=json.loads(row[4]),
            salt=bytes(row[5]),
            auth_verifier=bytes(row[6]),
            recovery_verifier=None if row[7] is None else bytes(row[7]),
            quota=row[8],
        )

    async def account_by_name(self, name: str) -> Account | None:
        return self._account(await self.pool.fetchrow(self._ACCOUNT_COLUMNS + " WHERE name = $1", name))

    async def account_by_id(self, account_id: str) -> Account | None:
        return self._account(await self.pool.fetchrow(self._ACCOUNT_COLUMNS + " WHERE id = $1", account_id))

    async def delete_account(self, account_id: str) -> None:
        await self._execute("DELETE FROM accounts WHERE id = $1", account_id)

    async def keyslots(self, account_id: str) -> dict[str, dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT kind, slot FROM keyslots WHERE account_id = $1 ORDER BY kind", account_id
        )
        return {row[0]: json.loads(row[1]) for row in rows}

    async def replace_password(
        self,
        account_id: str,
        kdf: dict[str, Any],
        salt: bytes,
        verifier: bytes,
        slot: dict[str, Any],
    ) -> None:
        async with self.pool.acquire() as db, db.transaction():
            await db.execute(
                "UPDATE accounts SET kdf = $1, salt = $2, auth_verifier = $3 WHERE id = $4",
                json.dumps(kdf, sort_keys=True),
                salt,
                verifier,
                account_id,
            )
            await self._put_slot(db, account_id, "password", slot)
            await db.execute("DELETE FROM sessions WHERE account_id = $1", account_id)

    async def replace_recovery(self, account_id: str, verifier: bytes, slot: dict[str, Any]) -> None:
        async with self.pool.acquire() as db, db.transaction():
            await db.execute("UPDATE accounts SET recovery_verifier = $1 WHERE id = $2", verifier, account_id)
            await self._put_slot(db, account_id, "recovery", slot)
            await db.execute("DELETE FROM sessions WHERE account_id = $1", account_id)

    @staticmethod
    async def _put_slot(db: asyncpg.Connection, account_id: str, kind: str, slot: dict[str, Any]) -> None:
        await db.execute(
            "INSERT INTO keyslots (account_id, kind, slot) VALUES ($1, $2, $3)"
            " ON CONFLICT (account_id, kind) DO UPDATE SET slot = excluded.slot",
            account_id,
            kind,
            json.dumps(slot, sort_keys=True),
        )

    # Sessions ---------------------------------------------------------------
    async def create_session(self, session: Session) -> None:
        await self._execute(
            "INSERT INTO sessions (token_hash, account_id, created, expires) VALUES ($1,$2,$3,$4)",
            session.token_hash,
            session.account_id,
            session.created,
            session.expires,
        )

    async def session(self, token_hash: bytes, now: int) -> Session | None:
        row = await self.pool.fetchrow(
            "SELECT token_hash, account_id, created, expires FROM sessions"
            " WHERE token_hash = $1 AND expires > $2",
            token_hash,
            now,
        )
        return None if row is None else Session(bytes(row[0]), row[1], row[2], row[3])

    async def delete_session(self, token_hash: bytes) -> None:
        await self._execute("DELETE FROM sessions WHERE token_hash = $1", token_hash)

    # Devices ----------------------------------------------------------------
    async def create_device(self, device: Device, token_hash: bytes) -> None:
        await self._execute(
            "INSERT INTO devices (id, account_id, name, token_hash, created, last_seen, revoked)"
            " VALUES ($1,$2,$3,$4,$5,$6,$7)",
            device.id,
            device.account_id,
            device.name,
            token_hash,
            device.created,
            device.last_seen,
            device.revoked,
        )

    _DEVICE_COLUMNS = "SELECT id, account_id, name, created, last_seen, revoked FROM devices"

    async def device_by_token(self, token_hash: bytes) -> Device | None:
        row = await self.pool.fetchrow(self._DEVICE_COLUMNS + " WHERE token_hash = $1", token_hash)
        return None if row is None else Device(*row)

    async def devices(self, account_id: str) -> list[Device]:
        sql = self._DEVICE_COLUMNS + " WHERE account_id = $1 ORDER BY created, id"
        return [Device(*row) for row in await self.pool.fetch(sql, account_id)]

    async def revoke_device(self, account_id: str, device_id: str, now: int) -> bool:
        status = await self._execute(
            "UPDATE devices SET revoked = COALESCE(revoked, $1) WHERE id = $2 AND account_id = $3",
            now,
            device_id,
            account_id,
        )
        return status == "UPDATE 1"

    async def touch_device(self, device_id: str, now: int) -> None:
        await self._execute("UPDATE devices SET last_seen = $1 WHERE id = $2", now, device_id)

    # Objects ----------------------------------------------------------------
    async def record_object(self, account_id: str, record: ObjectRecord) -> bool:
        try:
            async with self.pool.acquire() as db, db.transaction():
                row = await db.fetchrow(
                    "SELECT usage_bytes, quota FROM accounts WHERE id = $1 FOR UPDATE", account_id
                )
                exists = await db.fetchval(
                    "SELECT 1 FROM objects WHERE account_id = $1 AND kind = $2 AND id = $3",
                    account_id,
                    record.kind,
                    record.id,
                )
                if exists:
                    return False
                used, quota = row
                if quota is not None and used + record.size > quota:
                    raise AccountQuotaFullError
                await db.execute(
                    "INSERT INTO objects (account_id, kind, id, size, created) VALUES ($1,$2,$3,$4,$5)",
                    account_id,
                    record.kind,
                    record.id,
                    record.size,
                    record.created,
                )
                await db.execute(
                    "UPDATE accounts SET usage_bytes = usage_bytes + $1, usage_objects = usage_objects + 1"
                    " WHERE id = $2",
                    record.size,
                    account_id,
                )
                return True
        except asyncpg.DiskFullError:
            raise StorageFullError from None

    async def object(self, account_id: str, kind: str, object_id: str) -> ObjectRecord | None:
        row = await self.pool.fetchrow(
            "SELECT kind, id, size, created FROM objects WHERE account_id = $1 AND kind = $2 AND id = $3",
            account_id,
            kind,
            object_id,
        )
        return None if row is None else ObjectRecord(*row)

    async def delete_object(self, account_id: str, kind: str, object_id: str) -> bool:
        async with self.pool.acquire() as db, db.transaction():
            size = await db.fetchval(
                "DELETE FROM objects WHERE account_id = $1 AND kind = $2 AND id = $3 RETURNING size",
                account_id,
                kind,
                object_id,
            )
            if size is None:
                return False
            await db.execute(
                "UPDATE accounts SET usage_bytes = usage_bytes - $1, usage_objects = usage_objects - 1"
                " WHERE id = $2",
                size,
                account_id,
            )
            return True

    async def list_objects(self, account_id: str, kind: str, after: str, limit: int) -> list[ObjectRecord]:
        rows = await self.pool.fetch(
            "SELECT kind, id, size, created FROM objects WHERE account_id = $1 AND kind = $2"
            " AND id > $3 ORDER BY id LIMIT $4",
            account_id,
            kind,
            after,
            limit,
        )
        return [ObjectRecord(*row) for row in rows]

    async def usage(self, account_id: str) -> Usage:
        row = await self.pool.fetchrow(
            "SELECT usage_bytes, usage_objects, quota FROM accounts WHERE id = $1", account_id
        )
        return Usage(0, 0, None) if row is None else Usage(*row)

    # Locks ------------------------------------------------------------------
    async def acquire_lock(self, lease: Lease, now: int) -> None:
        async with self.pool.acquire() as db, db.transaction():
            # The account row lock serializes acquisitions across replicas.
            await db.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", lease.account_id)
            account = lease.account_id
            await db.execute("DELETE FROM locks WHERE account_id = $1 AND expires <= $2", account, now)
            rows = await db.fetch("SELECT mode, expires FROM locks WHERE account_id = $1", account)
            conflicting = [row[1] for row in rows if row[0] in LOCK_CONFLICTS[lease.mode]]
            if conflicting:
                raise LockConflictError(max(conflicting))
            await db.execute(
                "INSERT INTO locks (id, account_id, mode, holder, created, expires, principal)"
                " VALUES ($1,$2,$3,$4,$5,$6,$7)",
                lease.id,
                lease.account_id,
                lease.mode,
                lease.holder,
                lease.created,
                lease.expires,
                lease.principal,
            )

    async def renew_lock(self, account_id: str, lock_id: str, principal: str, expires: int, now: int) -> bool:
        status = await self._execute(
            "UPDATE locks SET expires = $1"
            " WHERE id = $2 AND account_id = $3 AND principal = $4 AND expires > $5",
            expires,
            lock_id,
            account_id,
            principal,
            now,
        )
        return status == "UPDATE 1"

    async def release_lock(self, account_id: str, lock_id: str, principal: str | None) -> bool:
        sql = "DELETE FROM locks WHERE id = $1 AND account_id = $2 AND ($3::text IS NULL OR principal = $3)"
        status = await self._execute(sql, lock_id, account_id, principal)
        return status == "DELETE 1"

    async def locks(self, account_id: str, now: int) -> list[Lease]:
        rows = await self.pool.fetch(
            "SELECT id, account_id, mode, holder, created, expires, principal FROM locks"
            " WHERE account_id = $1 AND expires > $2 ORDER BY created, id",
            account_id,
            now,
        )
        return [Lease(*row) for row in rows]

    # Throttling -------------------------------------------------------------
    async def throttle(self, key: bytes) -> Throttle | None:
        row = await self.pool.fetchrow("SELECT failures, last FROM throttle WHERE key = $1", key)
        return None if row is None else Throttle(*row)

    async def record_failure(self, key: bytes, now: int) -> None:
        await self._execute(
            "INSERT INTO throttle (key, failures, last) VALUES ($1, 1, $2)"
            " ON CONFLICT (key) DO UPDATE SET failures = throttle.failures + 1, last = excluded.last",
            key,
            now,
        )

    async def clear_failures(self, key: bytes) -> None:
        await self._execute("DELETE FROM throttle WHERE key = $1", key)
