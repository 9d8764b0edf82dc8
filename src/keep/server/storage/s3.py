"""S3-compatible object store (`s3://BUCKET/PREFIX?endpoint=URL&region=R`).

Works with AWS S3, MinIO, Ceph RGW, Backblaze B2 and the like through
aiobotocore; credentials come the standard AWS way (AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY, or AWS_SHARED_CREDENTIALS_FILE / AWS_PROFILE).

Layout: `PREFIX/<account id>/<kind>/<id>`. An upload is hashed while it
streams: a body of at most one part (8 MiB) is kept in memory, verified, then
written with one PUT; a larger one goes up as a multipart upload, part by
part, and is completed only if its length and SHA-256 match (otherwise the
multipart upload is aborted). Either way nothing becomes visible before it is
verified, and memory per upload is bounded by one part, whatever the body
size. Incomplete multipart uploads older than a day (a replica crashed
mid-upload) are aborted at start.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from keep.protocol.api import OBJECT_KINDS, is_object_id
from keep.protocol.object_id import new_hasher
from keep.server.storage.objects import Body, HashMismatchError, ObjectStore, SizeMismatchError, StoredObject

PART_SIZE = 8 * 1024 * 1024  # S3 parts must be >= 5 MiB except the last
READ_BLOCK = 1024 * 1024
DELETE_BATCH = 1000  # keys per DeleteObjects request (the S3 limit)
STALE_UPLOAD = datetime.timedelta(days=1)
POOL_CONNECTIONS = 64


class S3ObjectStore(ObjectStore):
    local_files = False

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.endpoint = query.get("endpoint", [None])[0]
        self.region = query.get("region", ["us-east-1"])[0]
        self._stack = AsyncExitStack()
        self._client: Any = None

    def _key(self, account_id: str, kind: str, object_id: str) -> str:
        if kind not in OBJECT_KINDS or not is_object_id(object_id) or not account_id.isalnum():
            raise ValueError("unsafe object name")
        return f"{self._account_prefix(account_id)}{kind}/{object_id}"

    def _account_prefix(self, account_id: str) -> str:
        return f"{self.prefix}/{account_id}/" if self.prefix else f"{account_id}/"

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError("object store is not open")
        return self._client

    async def open(self) -> None:
        config = AioConfig(max_pool_connections=POOL_CONNECTIONS, s3={"addressing_style": "path"})
        self._client = await self._stack.enter_async_context(
            get_session().create_client(
                "s3", endpoint_url=self.endpoint, region_name=self.region, config=config
            )
        )
        await self.client.head_bucket(Bucket=self.bucket)  # fail at start, not on the first upload
        await self._abort_stale_uploads()

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    async def _abort_stale_uploads(self) -> None:
        cutoff = datetime.datetime.now(datetime.UTC) - STALE_UPLOAD
        paginator = self.client.get_paginator("list_multipart_uploads")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for upload in page.get("Uploads", []):
                if upload["Initiated"] < cutoff:
                    await self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )

    async def put(
        self, account_id: str, kind: str, object_id: str, size: int, body: Body, *, hashed_by: str
    ) -> None:
        key = self._key(account_id, kind, object_id)
        loop = asyncio.get_running_loop()
        digest = new_hasher(hashed_by)  # fed a part at a time on a worker thread
        buffered: list[bytes] = []
        held = received = 0
        upload_id: str | None = None
        etags: list[dict[str, Any]] = []
        try:
            async for data in body:
                received += len(data)
                if received > size:
                    raise SizeMismatchError
                buffered.append(data)
                held += len(data)
                if held >= PART_SIZE:
                    part = b"".join(buffered)
                    buffered, held = [], 0
                    await loop.run_in_executor(None, digest.update, part)
                    if upload_id is None:
                        reply = await self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
                        upload_id = reply["UploadId"]
                    etags.append(await self._part(key, upload_id, len(etags) + 1, part))
            if received != size:
                raise SizeMismatchError
            last = b"".join(buffered)
            await loop.run_in_executor(None, digest.update, last)
            if digest.hexdigest() != object_id:
                raise HashMismatchError
            if upload_id is None:
                await self.client.put_object(Bucket=self.bucket, Key=key, Body=last)
                return
            if last:
                etags.append(await self._part(key, upload_id, len(etags) + 1, last))
            await self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": etags}
            )
        except BaseException:
            if upload_id is not None:
                await asyncio.shield(
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                )
            raise

    async def _part(self, key: str, upload_id: str, number: int, data: bytes) -> dict[str, Any]:
        reply = await self.client.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )
        return {"ETag": reply["ETag"], "PartNumber": number}

    async def stat(self, account_id: str, kind: str, object_id: str) -> StoredObject | None:
        try:
            reply = await self.client.head_object(
                Bucket=self.bucket, Key=self._key(account_id, kind, object_id)
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return StoredObject(int(reply["ContentLength"]), None)

    async def read(
        self, account_id: str, kind: str, object_id: str, start: int, end: int
    ) -> AsyncIterator[bytes]:
        if end <= start:
            return
        reply = await self.client.get_object(
            Bucket=self.bucket, Key=self._key(account_id, kind, object_id), Range=f"bytes={start}-{end - 1}"
        )
        async with reply["Body"] as stream:
            while data := await stream.read(READ_BLOCK):
                yield data

    async def delete(self, account_id: str, kind: str, object_id: str) -> None:
        await self.client.delete_object(Bucket=self.bucket, Key=self._key(account_id, kind, object_id))

    async def delete_account(self, account_id: str) -> None:
        keys = [key async for key in self._keys(self._account_prefix(account_id))]
        for i in range(0, len(keys), DELETE_BATCH):
            batch = [{"Key": k} for k in keys[i : i + DELETE_BATCH]]
            await self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    async def _keys(self, prefix: str) -> AsyncIterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]

    async def iter_objects(self, account_id: str) -> AsyncIterator[tuple[str, str]]:
        prefix = self._account_prefix(account_id)
        async for key in self._keys(prefix):
            kind, _, object_id = key[len(prefix) :].partition("/")
            if kind in OBJECT_KINDS and is_object_id(object_id):
                yield kind, object_id

    async def iter_accounts(self) -> AsyncIterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        prefix = f"{self.prefix}/" if self.prefix else ""
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                yield common["Prefix"][len(prefix) :].rstrip("/")
