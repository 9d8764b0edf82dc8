"""`keep-server scrub`: find bit rot without any key.

Every object is named by the hash of its bytes (BLAKE3, or SHA-256 for
objects written before BLAKE3: `keep.protocol.object_id`), so the server can
re-hash each stored body under both, in one read, and compare. Scrub also
reports objects the metadata records but the store lost, and bodies the
metadata does not know (left by a crash between the two writes; harmless,
but worth an operator's look). Results are per account name, since that is
what an operator acts on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from keep.protocol.api import LIST_LIMIT_MAX, OBJECT_KINDS
from keep.protocol.object_id import HASHES, new_hasher
from keep.server.storage.metadata import MetadataStore
from keep.server.storage.objects import ObjectStore


@dataclass
class AccountScrub:
    account: str  # the account's name, or its id if the metadata has no such account
    objects: int = 0
    bytes: int = 0
    damaged: list[tuple[str, str, str]] = field(default_factory=list)  # kind, id, what is wrong
    missing: list[tuple[str, str]] = field(default_factory=list)  # recorded, but no body
    unrecorded: list[tuple[str, str]] = field(default_factory=list)  # body, but no record

    @property
    def healthy(self) -> bool:
        return not (self.damaged or self.missing)


async def scrub(metadata: MetadataStore, objects: ObjectStore) -> list[AccountScrub]:
    report = []
    async for account_id in objects.iter_accounts():
        account = await metadata.account_by_id(account_id)
        result = AccountScrub(account.name if account else account_id)
        stored: set[tuple[str, str]] = set()
        async for kind, object_id in objects.iter_objects(account_id):
            stored.add((kind, object_id))
            problem = await _verify(objects, account_id, kind, object_id, result)
            if problem:
                result.damaged.append((kind, object_id, problem))
        if account is not None:
            for kind in OBJECT_KINDS:
                async for record_id in _recorded(metadata, account_id, kind):
                    if (kind, record_id) not in stored:
                        result.missing.append((kind, record_id))
                    stored.discard((kind, record_id))
        result.unrecorded = sorted(stored) if account is not None else []
        report.append(result)
    return report


async def _verify(
    objects: ObjectStore, account_id: str, kind: str, object_id: str, result: AccountScrub
) -> str:
    stat = await objects.stat(account_id, kind, object_id)
    if stat is None:  # deleted while we scanned
        return ""
    digests = [new_hasher(name) for name in HASHES]
    size = 0
    async for block in objects.read(account_id, kind, object_id, 0, stat.size):
        for digest in digests:
            digest.update(block)
        size += len(block)
    result.objects += 1
    result.bytes += size
    if size != stat.size:
        return f"read {size} bytes of {stat.size}"
    if all(digest.hexdigest() != object_id for digest in digests):
        return "content does not hash to its name"
    return ""


async def _recorded(metadata: MetadataStore, account_id: str, kind: str) -> AsyncIterator[str]:
    after = ""
    while True:
        page = await metadata.list_objects(account_id, kind, after, LIST_LIMIT_MAX)
        for record in page:
            yield record.id
        if len(page) < LIST_LIMIT_MAX:
            return
        after = page[-1].id
