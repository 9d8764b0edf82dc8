"""One SQLite connection on its own thread, for the embedded stores of both
servers (keep-server's metadata, keep-checkin's registry)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from keep.server.storage.objects import StorageFullError

T = TypeVar("T")


class SqliteThread:
    """One SQLite connection on one dedicated thread: SQLite serializes writers
    anyway, and the event loop never waits on the disk. WAL journal with
    `synchronous=FULL`, because a client treats an acknowledged write as
    durable. `prepare` (schema, migrations) runs once in autocommit mode;
    afterwards each `run` is one transaction, committed or rolled back."""

    def __init__(self, path: Path, prepare: Callable[[sqlite3.Connection], None], name: str) -> None:
        self._path = path
        self._prepare = prepare
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._db: sqlite3.Connection | None = None

    async def open(self) -> None:
        def connect() -> sqlite3.Connection:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=10000")
            self._prepare(db)
            db.isolation_level = "DEFERRED"
            return db

        self._db = await asyncio.get_running_loop().run_in_executor(self._executor, connect)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        db = self._db
        if db is None:
            raise RuntimeError(f"{self._path.name} is not open")

        def call() -> T:
            try:
                with db:  # one transaction per call: commit, or roll back on error
                    return fn(db)
            except sqlite3.OperationalError as exc:
                if "full" in str(exc):  # SQLITE_FULL: "database or disk is full"
                    raise StorageFullError from None
                raise

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await asyncio.get_running_loop().run_in_executor(self._executor, db.close)
        self._executor.shutdown(wait=True)
