"""SQLite metadata store: the embedded default (`sqlite:///path/keep.db`),
on `SqliteThread` (also used by keep-checkin's registry).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from keep.protocol.api import LOCK_CONFLICTS
from keep.server.shared.sqlite_thread import SqliteThread
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

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS server_config (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created INTEGER NOT NULL,
    auth_method INTEGER NOT NULL, kdf TEXT NOT NULL, salt BLOB NOT NULL,
    auth_verifier BLOB NOT NULL, recovery_verifier BLOB, quota INTEGER,
    usage_bytes INTEGER NOT NULL DEFAULT 0, usage_objects INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS keyslots (
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    kind TEXT NOT NULL, slot TEXT NOT NULL, PRIMARY KEY (account_id, kind)
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash BLOB PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    created INTEGER NOT NULL, expires INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL, token_hash BLOB NOT NULL UNIQUE, created INTEGER NOT NULL,
    last_seen INTEGER NOT NULL, revoked INTEGER
);
CREATE TABLE IF NOT EXISTS objects (
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    kind TEXT NOT NULL, id TEXT NOT NULL, size INTEGER NOT NULL, created INTEGER NOT NULL,
    PRIMARY KEY (account_id, kind, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS locks (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    mode TEXT NOT NULL, holder TEXT NOT NULL, created INTEGER NOT NULL,
    expires INTEGER NOT NULL, principal TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS throttle (key BLOB PRIMARY KEY, failures INTEGER NOT NULL, last INTEGER NOT NULL);
"""


def _prepare_metadata(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA foreign_keys=ON")
    version = db.execute("PRAGMA user_version").fetchone()[0]
    db.executescript(SCHEMA)
    if version == 1:  # version 2 records who took each lease
        db.execute("ALTER TABLE locks ADD COLUMN principal TEXT NOT NULL DEFAULT ''")
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


class SqliteMetadataStore(MetadataStore):
    def __init__(self, path: Path) -> None:
        self._db = SqliteThread(path, _prepare_metadata, "keep-sqlite")
        self._run = self._db.run

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    async def server_secret(self, candidate: bytes) -> bytes:
        def op(db: sqlite3.Connection) -> bytes:
            db.execute(
                "INSERT OR IGNORE INTO server_config (key, value) VALUES ('secret', ?)",
                (candidate,),
            )
            row = db.execute("SELECT value FROM server_config WHERE key = 'secret'").fetchone()
            return bytes(row[0])

        return await self._run(op)

    # Accounts -------------------------------------------------------------
    async def create_account(self, account: Account, slots: dict[str, dict[str, Any]]) -> None:
        def op(db: sqlite3.Connection) -> None:
            try:
                db.execute(
                    "INSERT INTO accounts (id, name, created, auth_method, kdf, salt,"
                    " auth_verifier, recovery_verifier, quota) VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        account.id,
                        account.name,
                        account.created,
                        account.auth_method,
                        json.dumps(account.kdf, sort_keys=True),
                        account.salt,
                        account.auth_verifier,
                        account.recovery_verifier,
                        account.quota,
                    ),
                )
            except sqlite3.IntegrityError:
                raise AccountExistsError(account.name) from None
            db.executemany(
                "INSERT INTO keyslots (account_id, kind, slot) VALUES (?,?,?)",
                [(account.id, kind, json.dumps(slot, sort_keys=True)) for kind, slot in slots.items()],
            )

        await self._run(op)

    @staticmethod
    def _account(row: tuple[Any, ...] | None) -> Account | None:
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

    _ACCOUNT_COLUMNS = (
        "SELECT id, name, created, auth_method, kdf, salt, auth_verifier,"
        " recovery_verifier, quota FROM accounts"
    )

    async def account_by_name(self, name: str) -> Account | None:
        sql = self._ACCOUNT_COLUMNS + " WHERE name = ?"
        return await self._run(lambda db: self._account(db.execute(sql, (name,)).fetchone()))

    async def account_by_id(self, account_id: str) -> Account | None:
        sql = self._ACCOUNT_COLUMNS + " WHERE id = ?"
        return await self._run(lambda db: self._account(db.execute(sql, (account_id,)).fetchone()))

    async def delete_account(self, account_id: str) -> None:
        await self._run(lambda db: db.execute("DELETE FROM accounts WHERE id = ?", (account_id,)))

    async def keyslots(self, account_id: str) -> dict[str, dict[str, Any]]:
        def op(db: sqlite3.Connection) -> dict[str, dict[str, Any]]:
            rows = db.execute(
                "SELECT kind, slot FROM keyslots WHERE account_id = ? ORDER BY kind", (account_id,)
            )
            return {kind: json.loads(slot) for kind, slot in rows}

        return await self._run(op)

    async def replace_password(
        self,
        account_id: str,
        kdf: dict[str, Any],
        salt: bytes,
        verifier: bytes,
        slot: dict[str, Any],
    ) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE accounts SET kdf = ?, salt = ?, auth_verifier = ? WHERE id = ?",
                (json.dumps(kdf, sort_keys=True), salt, verifier, account_id),
            )
            db.execute(
                "INSERT OR REPLACE INTO keyslots (account_id, kind, slot) VALUES (?, 'password', ?)",
                (account_id, json.dumps(slot, sort_keys=True)),
            )
            db.execute("DELETE FROM sessions WHERE account_id = ?", (account_id,))

        await self._run(op)

    async def replace_recovery(self, account_id: str, verifier: bytes, slot: dict[str, Any]) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.execute("UPDATE accounts SET recovery_verifier = ? WHERE id = ?", (verifier, account_id))
            db.execute(
                "INSERT OR REPLACE INTO keyslots (account_id, kind, slot) VALUES (?, 'recovery', ?)",
                (account_id, json.dumps(slot, sort_keys=True)),
            )
            db.execute("DELETE FROM sessions WHERE account_id = ?", (account_id,))

        await self._run(op)

    # Sessions ---------------------------------------------------------------
    async def create_session(self, session: Session) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT INTO sessions (token_hash, account_id, created, expires) VALUES (?,?,?,?)",
                (session.token_hash, session.account_id, session.created, session.expires),
            )
        )

    async def session(self, token_hash: bytes, now: int) -> Session | None:
        def op(db: sqlite3.Connection) -> Session | None:
            row = db.execute(
                "SELECT token_hash, account_id, created, expires FROM sessions"
                " WHERE token_hash = ? AND expires > ?",
                (token_hash, now),
            ).fetchone()
            return None if row is None else Session(bytes(row[0]), row[1], row[2], row[3])

        return await self._run(op)

    async def delete_session(self, token_hash: bytes) -> None:
        await self._run(lambda db: db.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,)))

    # Devices ----------------------------------------------------------------
    async def create_device(self, device: Device, token_hash: bytes) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT INTO devices (id, account_id, name, token_hash, created, last_seen, revoked)"
                " VALUES (?,?,?,?,?,?,?)",
                (
                    device.id,
                    device.account_id,
                    device.name,
                    token_hash,
                    device.created,
                    device.last_seen,
                    device.revoked,
                ),
            )
        )

    _DEVICE_COLUMNS = "SELECT id, account_id, name, created, last_seen, revoked FROM devices"

    async def device_by_token(self, token_hash: bytes) -> Device | None:
        def op(db: sqlite3.Connection) -> Device | None:
            row = db.execute(self._DEVICE_COLUMNS + " WHERE token_hash = ?", (token_hash,)).fetchone()
            return None if row is None else Device(*row)

        return await self._run(op)

    async def devices(self, account_id: str) -> list[Device]:
        def op(db: sqlite3.Connection) -> list[Device]:
            sql = self._DEVICE_COLUMNS + " WHERE account_id = ? ORDER BY created, id"
            return [Device(*row) for row in db.execute(sql, (account_id,))]

        return await self._run(op)

    async def revoke_device(self, account_id: str, device_id: str, now: int) -> bool:
        def op(db: sqlite3.Connection) -> bool:
            cur = db.execute(
                "UPDATE devices SET revoked = COALESCE(revoked, ?) WHERE id = ? AND account_id = ?",
                (now, device_id, account_id),
            )
            return cur.rowcount == 1

        return await self._run(op)

    async def touch_device(self, device_id: str, now: int) -> None:
        await self._run(
            lambda db: db.execute("UPDATE devices SET last_seen = ? WHERE id = ?", (now, device_id))
        )

    # Objects ----------------------------------------------------------------
    async def record_object(self, account_id: str, record: ObjectRecord) -> bool:
        def op(db: sqlite3.Connection) -> bool:
            db.execute("BEGIN IMMEDIATE")
            exists = db.execute(
                "SELECT 1 FROM objects WHERE account_id = ? AND kind = ? AND id = ?",
                (account_id, record.kind, record.id),
            ).fetchone()
            if exists:
                return False
            used, quota = db.execute(
                "SELECT usage_bytes, quota FROM accounts WHERE id = ?", (account_id,)
            ).fetchone()
            if quota is not None and used + record.size > quota:
                raise AccountQuotaFullError
            db.execute(
                "INSERT INTO objects (account_id, kind, id, size, created) VALUES (?,?,?,?,?)",
                (account_id, record.kind, record.id, record.size, record.created),
            )
            db.execute(
                "UPDATE accounts SET usage_bytes = usage_bytes + ?, usage_objects = usage_objects + 1"
                " WHERE id = ?",
                (record.size, account_id),
            )
            return True

        return await self._run(op)

    async def object(self, account_id: str, kind: str, object_id: str) -> ObjectRecord | None:
        def op(db: sqlite3.Connection) -> ObjectRecord | None:
            row = db.execute(
                "SELECT kind, id, size, created FROM objects WHERE account_id = ? AND kind = ? AND id = ?",
                (account_id, kind, object_id),
            ).fetchone()
            return None if row is None else ObjectRecord(*row)

        return await self._run(op)

    async def delete_object(self, account_id: str, kind: str, object_id: str) -> bool:
        def op(db: sqlite3.Connection) -> bool:
            row = db.execute(
                "DELETE FROM objects WHERE account_id = ? AND kind = ? AND id = ? RETURNING size",
                (account_id, kind, object_id),
            ).fetchone()
            if row is None:
                return False
            db.execute(
                "UPDATE accounts SET usage_bytes = usage_bytes - ?, usage_objects = usage_objects - 1"
                " WHERE id = ?",
                (row[0], account_id),
            )
            return True

        return await self._run(op)

    async def list_objects(self, account_id: str, kind: str, after: str, limit: int) -> list[ObjectRecord]:
        def op(db: sqlite3.Connection) -> list[ObjectRecord]:
            rows = db.execute(
                "SELECT kind, id, size, created FROM objects WHERE account_id = ? AND kind = ?"
                " AND id > ? ORDER BY id LIMIT ?",
                (account_id, kind, after, limit),
            )
            return [ObjectRecord(*row) for row in rows]

        return await self._run(op)

    async def usage(self, account_id: str) -> Usage:
        def op(db: sqlite3.Connection) -> Usage:
            row = db.execute(
                "SELECT usage_bytes, usage_objects, quota FROM accounts WHERE id = ?", (account_id,)
            ).fetchone()
            return Usage(0, 0, None) if row is None else Usage(*row)

        return await self._run(op)

    # Locks ------------------------------------------------------------------
    async def acquire_lock(self, lease: Lease, now: int) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM locks WHERE account_id = ? AND expires <= ?", (lease.account_id, now))
            rows = db.execute("SELECT mode, expires FROM locks WHERE account_id = ?", (lease.account_id,))
            conflicting = [expires for mode, expires in rows if mode in LOCK_CONFLICTS[lease.mode]]
            if conflicting:
                raise LockConflictError(max(conflicting))
            db.execute(
                "INSERT INTO locks (id, account_id, mode, holder, created, expires, principal)"
                " VALUES (?,?,?,?,?,?,?)",
                (
                    lease.id,
                    lease.account_id,
                    lease.mode,
                    lease.holder,
                    lease.created,
                    lease.expires,
                    lease.principal,
                ),
            )

        await self._run(op)

    async def renew_lock(self, account_id: str, lock_id: str, principal: str, expires: int, now: int) -> bool:
        def op(db: sqlite3.Connection) -> bool:
            cur = db.execute(
                "UPDATE locks SET expires = ?"
                " WHERE id = ? AND account_id = ? AND principal = ? AND expires > ?",
                (expires, lock_id, account_id, principal, now),
            )
            return cur.rowcount == 1

        return await self._run(op)

    async def release_lock(self, account_id: str, lock_id: str, principal: str | None) -> bool:
        def op(db: sqlite3.Connection) -> bool:
            cur = db.execute(
                "DELETE FROM locks WHERE id = ? AND account_id = ? AND (? IS NULL OR principal = ?)",
                (lock_id, account_id, principal, principal),
            )
            return cur.rowcount == 1

        return await self._run(op)

    async def locks(self, account_id: str, now: int) -> list[Lease]:
        def op(db: sqlite3.Connection) -> list[Lease]:
            rows = db.execute(
                "SELECT id, account_id, mode, holder, created, expires, principal FROM locks"
                " WHERE account_id = ? AND expires > ? ORDER BY created, id",
                (account_id, now),
            )
            return [Lease(*r) for r in rows]

        return await self._run(op)

    # Throttling -------------------------------------------------------------
    async def throttle(self, key: bytes) -> Throttle | None:
        def op(db: sqlite3.Connection) -> Throttle | None:
            row = db.execute("SELECT failures, last FROM throttle WHERE key = ?", (key,)).fetchone()
            return None if row is None else Throttle(*row)

        return await self._run(op)

    async def record_failure(self, key: bytes, now: int) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT INTO throttle (key, failures, last) VALUES (?, 1, ?)"
                " ON CONFLICT(key) DO UPDATE SET failures = failures + 1, last = excluded.last",
                (key, now),
            )
        )

    async def clear_failures(self, key: bytes) -> None:
        await self._run(lambda db: db.execute("DELETE FROM throttle WHERE key = ?", (key,)))
