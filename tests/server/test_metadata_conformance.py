"""Conformance suite every MetadataStore backend must pass unchanged.
Backends are listed in METADATA_BACKENDS: SQLite and a real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from keep.server.backends import metadata_store
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
)

# Backend name -> URL of a fresh store, given the test's tmp dir and request.
METADATA_BACKENDS: dict[str, Callable[[Path, pytest.FixtureRequest], str]] = {
    "sqlite": lambda tmp, _: f"sqlite:///{tmp / 'meta.db'}",
    "postgresql": lambda _, request: str(request.getfixturevalue("fresh_database")),
}


@pytest.fixture(params=sorted(METADATA_BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MetadataStore]:
    s = metadata_store(METADATA_BACKENDS[request.param](tmp_path, request))
    await s.open()
    yield s
    await s.close()


def account(name: str = "alice", quota: int | None = None, account_id: str = "a1") -> Account:
    return Account(account_id, name, 1, 1, {"algorithm": "argon2id"}, b"s" * 32, b"v" * 32, None, quota)


SLOT = {"kind": "password", "salt": "x", "wrapped": "y", "version": 1}


async def test_server_secret_is_stable(store: MetadataStore) -> None:
    first = await store.server_secret(b"1" * 32)
    assert await store.server_secret(b"2" * 32) == first == b"1" * 32


async def test_accounts(store: MetadataStore) -> None:
    await store.create_account(account(), {"password": SLOT})
    with pytest.raises(AccountExistsError):
        await store.create_account(account(account_id="a2"), {"password": SLOT})
    assert await store.account_by_name("alice") == account()
    assert await store.account_by_id("a1") == account()
    assert await store.account_by_name("bob") is None
    assert await store.keyslots("a1") == {"password": SLOT}
    new_slot = {**SLOT, "wrapped": "z"}
    await store.replace_password("a1", {"algorithm": "argon2id", "x": 1}, b"t" * 32, b"w" * 32, new_slot)
    got = await store.account_by_id("a1")
    assert got is not None
    assert (got.salt, got.auth_verifier, got.kdf["x"]) == (b"t" * 32, b"w" * 32, 1)
    await store.replace_recovery("a1", b"r" * 32, {**SLOT, "kind": "recovery"})
    assert set(await store.keyslots("a1")) == {"password", "recovery"}
    got = await store.account_by_id("a1")
    assert got is not None
    assert got.recovery_verifier == b"r" * 32


async def test_delete_account_cascades(store: MetadataStore) -> None:
    await store.create_account(account(), {"password": SLOT})
    await store.create_session(Session(b"h", "a1", 1, 100))
    await store.create_device(Device("d1", "a1", "nas", 1, 1, None), b"dh")
    await store.record_object("a1", ObjectRecord("pack", "0" * 64, 10, 1))
    await store.acquire_lock(Lease("l1", "a1", "shared", "", 1, 100), 1)
    await store.delete_account("a1")
    assert await store.account_by_id("a1") is None
    assert await store.session(b"h", 2) is None
    assert await store.device_by_token(b"dh") is None
    assert await store.object("a1", "pack", "0" * 64) is None
    assert await store.locks("a1", 2) == []


async def test_sessions_expire(store: MetadataStore) -> None:
    await store.create_account(account(), {"password": SLOT})
    await store.create_session(Session(b"h", "a1", 1, 100))
    assert await store.session(b"h", 99) == Session(b"h", "a1", 1, 100)
    assert await store.session(b"h", 100) is None
    await store.delete_session(b"h")
    assert await store.session(b"h", 50) is None


async def test_devices(store: MetadataStore) -> None:
    await store.create_account(account(), {"password": SLOT})
    await store.create_device(Device("d1", "a1", "nas", 1, 1, None), b"dh")
    await store.touch_device("d1", 50)
    assert await store.device_by_token(b"dh") == Device("d1", "a1", "nas", 1, 50, None)
    assert not await store.revoke_device("other-account", "d1", 60)
    assert await store.revoke_device("a1", "d1", 60)
    assert await store.revoke_device("a1", "d1", 70)  # idempotent, keeps first time
    assert [d.revoked for d in await store.devices("a1")] == [60]


async def test_objects_usage_quota_and_paging(store: MetadataStore) -> None:
    await store.create_account(account(quota=100), {"password": SLOT})
    ids = [f"{i:064x}" for i in range(5)]
    for oid in ids:
        assert await store.record_object("a1", ObjectRecord("index", oid, 20, 1))
    assert not await store.record_object("a1", ObjectRecord("index", ids[0], 20, 1))
    with pytest.raises(AccountQuotaFullError):
        await store.record_object("a1", ObjectRecord("pack", "f" * 64, 1, 1))
    usage = await store.usage("a1")
    assert (usage.bytes, usage.objects, usage.quota) == (100, 5, 100)
    page = await store.list_objects("a1", "index", "", 2)
    assert [o.id for o in page] == ids[:2]
    page = await store.list_objects("a1", "index", ids[1], 10)
    assert [o.id for o in page] == ids[2:]
    assert await store.list_objects("a1", "pack", "", 10) == []
    assert await store.delete_object("a1", "index", ids[0])
    assert not await store.delete_object("a1", "index", ids[0])
    assert (await store.usage("a1")).bytes == 80


async def test_concurrent_quota_is_never_exceeded(store: MetadataStore) -> None:
    await store.create_account(account(quota=50), {"password": SLOT})

    async def one(i: int) -> bool:
        try:
            return await store.record_object("a1", ObjectRecord("pack", f"{i:064x}", 10, 1))
        except AccountQuotaFullError:
            return False

    results = await asyncio.gather(*(one(i) for i in range(20)))
    assert sum(results) == 5
    assert (await store.usage("a1")).bytes == 50


async def test_locks(store: MetadataStore) -> None:
    await store.create_account(account(), {"password": SLOT})
    await store.acquire_lock(Lease("s1", "a1", "shared", "", 1, 100, "d1"), 1)
    await store.acquire_lock(Lease("s2", "a1", "shared", "", 1, 50, "d2"), 1)
    with pytest.raises(LockConflictError) as conflict:
        await store.acquire_lock(Lease("x1", "a1", "exclusive", "", 1, 100), 1)
    assert conflict.value.until == 100
    await store.acquire_lock(Lease("p1", "a1", "prune", "", 1, 100), 1)  # beside backups
    with pytest.raises(LockConflictError):
        await store.acquire_lock(Lease("p2", "a1", "prune", "", 1, 100), 1)  # one prune at a time
    assert await store.release_lock("a1", "p1", None)
    assert [lk.id for lk in await store.locks("a1", 60)] == ["s1"]
    assert not await store.renew_lock("a1", "s1", "d2", 200, 60)  # not d2's lease
    assert await store.renew_lock("a1", "s1", "d1", 200, 60)
    assert not await store.renew_lock("a1", "s2", "d2", 200, 60)  # expired
    assert [lk.principal for lk in await store.locks("a1", 60)] == ["d1"]
    assert not await store.release_lock("a1", "s1", "d2")  # nor may d2 release it
    assert await store.release_lock("a1", "s1", "d1")
    await store.acquire_lock(Lease("x1", "a1", "exclusive", "", 61, 100), 61)
    for mode in ("shared", "prune"):
        with pytest.raises(LockConflictError):
            await store.acquire_lock(Lease("s3", "a1", mode, "", 62, 100), 62)
    await store.acquire_lock(Lease("s3", "a1", "shared", "", 100, 150), 100)  # x1 expired


async def test_throttle(store: MetadataStore) -> None:
    assert await store.throttle(b"k") is None
    await store.record_failure(b"k", 5)
    await store.record_failure(b"k", 7)
    t = await store.throttle(b"k")
    assert t is not None
    assert (t.failures, t.last) == (2, 7)
    await store.clear_failures(b"k")
    assert await store.throttle(b"k") is None
