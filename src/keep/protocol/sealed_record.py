"""Sealing of the single-frame metadata objects: index, snapshot and lock
(docs/format.md §4.3). Body = zstd(msgpack(record)) in one BODY frame.
"""

from __future__ import annotations

from typing import Any

from keep.protocol import msgcodec
from keep.protocol.compression import compress_metadata, decompress_metadata, pad_metadata
from keep.protocol.envelope import ObjectKind, Suite, open_single, seal_single
from keep.protocol.keys import DataKey
from keep.protocol.limits import METADATA_OBJECT_MAX


def seal_record(
    data_key: DataKey, kind: ObjectKind, suite: Suite, salt: bytes, record: Any, pad_to: int = 0
) -> bytes:
    """With `pad_to`, the compressed body is padded to a PADMÉ length of at
    least that many bytes (`compression.pad_metadata`) before sealing."""
    body = compress_metadata(msgcodec.pack(record))
    return seal_single(data_key, kind, suite, salt, pad_metadata(body, pad_to) if pad_to else body)


def open_record(data_key: DataKey, kind: ObjectKind, data: bytes | memoryview) -> Any:
    body = decompress_metadata(open_single(data_key, kind, data), METADATA_OBJECT_MAX)
    return msgcodec.unpack(body, METADATA_OBJECT_MAX)
