"""Conformance suite every ObjectStore backend must pass unchanged
(OBJECT_BACKENDS: a directory and a real S3-protocol server, moto)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from keep.protocol.object_id import BLAKE3, HASHES, SHA256, object_id
from keep.server.backends import object_store
from keep.server.storage.objects import HashMismatchError, ObjectStore, SizeMismatchError

# Backend name -> URL of a fresh store, given the test's tmp dir and request.
OBJECT_BACKENDS: dict[str, Callable[[Path, pytest.FixtureRequest], str]] = {
    "directory": lambda tmp, _: f"file:///{tmp / 'objects'}",
    "s3": lambda _, request: str(request.getfixturevalue("fresh_bucket")),
}


@pytest.fixture(params=sorted(OBJECT_BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    s = object_store(OBJECT_BACKENDS[request.param](tmp_path, request))
    await s.open()
    yield s
    await s.close()


async def chunks(data: bytes, size: int = 100_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def read_all(store: ObjectStore, oid: str, start: int, end: int) -> bytes:
    return b"".join([part async for part in store.read("acct", "pack", oid, start, end)])


async def test_put_stat_read_delete(store: ObjectStore) -> None:
    data = os.urandom(1_500_000)
    oid = object_id(data)
    await store.put("acct", "pack", oid, len(data), chunks(data), hashed_by=BLAKE3)
    stat = await store.stat("acct", "pack", oid)
    assert stat is not None
    assert stat.size == len(data)
    assert await read_all(store, oid, 0, len(data)) == data
    assert await read_all(store, oid, 1000, 2000) == data[1000:2000]
    assert [x async for x in store.iter_objects("acct")] == [("pack", oid)]
    assert [x async for x in store.iter_accounts()] == ["acct"]
    await store.delete("acct", "pack", oid)
    assert await store.stat("acct", "pack", oid) is None
    await store.delete("acct", "pack", oid)  # deleting twice is fine


async def test_hash_and_size_mismatch_store_nothing(store: ObjectStore) -> None:
    data = b"x" * 1000
    oid = object_id(data)
    with pytest.raises(HashMismatchError):
        await store.put("acct", "pack", "0" * 64, len(data), chunks(data), hashed_by=BLAKE3)
    with pytest.raises(HashMismatchError):  # named by one hash, checked by the other
        await store.put("acct", "pack", oid, len(data), chunks(data), hashed_by=SHA256)
    with pytest.raises(SizeMismatchError):
        await store.put("acct", "pack", oid, len(data) + 1, chunks(data), hashed_by=BLAKE3)
    with pytest.raises(SizeMismatchError):
        await store.put("acct", "pack", oid, len(data) - 1, chunks(data), hashed_by=BLAKE3)
    assert await store.stat("acct", "pack", oid) is None
    assert [x async for x in store.iter_objects("acct")] == []


async def test_failed_stream_leaves_nothing(store: ObjectStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"partial"
        raise ConnectionResetError

    with pytest.raises(ConnectionResetError):
        await store.put("acct", "pack", "1" * 64, 100, broken(), hashed_by=BLAKE3)
    assert await store.stat("acct", "pack", "1" * 64) is None
    assert [x async for x in store.iter_objects("acct")] == []


async def test_accounts_are_isolated_and_deleted_whole(store: ObjectStore) -> None:
    data = b"shared content"
    oid = object_id(data)
    await store.put("a", "pack", oid, len(data), chunks(data), hashed_by=BLAKE3)
    assert await store.stat("b", "pack", oid) is None
    await store.put("b", "pack", oid, len(data), chunks(data), hashed_by=BLAKE3)
    await store.delete_account("a")
    assert await store.stat("a", "pack", oid) is None
    assert await store.stat("b", "pack", oid) is not None


async def test_concurrent_puts_of_the_same_object(store: ObjectStore) -> None:
    data = os.urandom(300_000)
    oid = object_id(data)
    await asyncio.gather(
        *(store.put("acct", "pack", oid, len(data), chunks(data), hashed_by=BLAKE3) for _ in range(6))
    )
    assert await read_all(store, oid, 0, len(data)) == data


@pytest.mark.parametrize("hashed_by", HASHES)
async def test_each_object_hash_names_what_it_stores(store: ObjectStore, hashed_by: str) -> None:
    data = os.urandom(250_000)
    oid = object_id(data) if hashed_by == BLAKE3 else hashlib.sha256(data).hexdigest()
    await store.put("acct", "pack", oid, len(data), chunks(data, 7_000), hashed_by=hashed_by)
    assert await read_all(store, oid, 0, len(data)) == data
