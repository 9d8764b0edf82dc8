"""Builds Keep's known-answer vectors from fixed inputs.

`python tests/vectors/make_vectors.py` rewrites tests/vectors/*.json; the test
suite rebuilds them in memory and compares, and also decodes the stored bytes,
so a second implementation can check itself against the JSON alone.
Compressed bodies are given as input bytes (zstd output may differ between
library versions; decoding them may not).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from keep.protocol import msgcodec
from keep.protocol.blob import BlobType, blob_id
from keep.protocol.chunker import Chunker
from keep.protocol.compression import Codec
from keep.protocol.envelope import ObjectCipher, ObjectKind, Suite, seal_single
from keep.protocol.index import Index, IndexedPack
from keep.protocol.kdf import KdfParams, KdfPolicy, derive_password_key
from keep.protocol.keys import (
    ChunkerKey,
    IdKey,
    Kek,
    MasterKey,
    RecoveryKey,
    credential_keys,
)
from keep.protocol.keyslot import KeySlot, SlotKind
from keep.protocol.object_id import object_id
from keep.protocol.pack import write_pack
from keep.protocol.padding import padme
from keep.protocol.recovery import encode_recovery_key
from keep.protocol.snapshot import Snapshot
from keep.protocol.tree import Node, NodeType, Tree

HERE = Path(__file__).parent
MASTER = MasterKey(bytes(range(64)))
ACCOUNT = "alice"
# Vectors use small Argon2 parameters so they are cheap to check; the policy
# that admits them exists only here and in test fixtures.
VECTOR_KDF = KdfParams(memory_kib=256, iterations=2, parallelism=1)
VECTOR_POLICY = KdfPolicy(8, 1, 1 << 20, 16, 4)


def stream(label: bytes, size: int) -> bytes:
    """Deterministic pseudo-random bytes: SHA-256(label || counter) blocks."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(label + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


def h(b: bytes) -> str:
    return b.hex()


def keys_vectors() -> dict[str, Any]:
    pk = derive_password_key(b"correct horse", stream(b"salt", 32), VECTOR_KDF, VECTOR_POLICY)
    kek, auth = credential_keys(pk)
    rk = RecoveryKey(stream(b"recovery", 32))
    return {
        "master": h(MASTER.material),
        "data_key": h(MASTER.data_key().material),
        "id_key": h(MASTER.id_key().material),
        "chunker_key": h(MASTER.chunker_key().material),
        "fingerprint": MASTER.fingerprint(),
        "owner_signing_seed": h(MASTER.owner_key().material),
        "owner_public_key": h(MASTER.owner_key().public().material),
        "password": "correct horse",
        "kdf_salt": h(stream(b"salt", 32)),
        "kdf_params": VECTOR_KDF.to_json(),
        "password_key": h(pk.material),
        "kek": h(kek.material),
        "auth_key": h(auth.material),
        "auth_verifier": h(auth.verifier()),
        "recovery_key": h(rk.material),
        "recovery_text": encode_recovery_key(rk),
        "recovery_kek": h(rk.kek().material),
        "recovery_auth": h(rk.auth().material),
    }


def keyslot_vectors() -> dict[str, Any]:
    kek = Kek(stream(b"kek", 32))
    salt = stream(b"slot-salt", 32)
    slot = KeySlot.wrap(kek, MASTER, ACCOUNT, SlotKind.PASSWORD, salt)
    return {"kek": h(kek.material), "account": ACCOUNT, "slot": slot.to_json()}


def blob_vectors() -> dict[str, Any]:
    key = IdKey(stream(b"id", 32))
    data = [b"", b"hello, keep", stream(b"blob", 5000)]
    return {"id_key": h(key.material), "cases": [[h(d), h(blob_id(key, d))] for d in data]}


def pack_vectors() -> dict[str, Any]:
    data_key = MASTER.data_key()
    id_key = MASTER.id_key()
    salt = stream(b"pack-salt", 32)
    blobs = [(BlobType.DATA, b"first blob"), (BlobType.TREE, b"\x92\x01\x90"), (BlobType.DATA, b"")]
    out: dict[str, Any] = {"salt": h(salt), "pad_floor": 512, "suites": {}}
    for suite in Suite:
        cipher = ObjectCipher.new(data_key, ObjectKind.PACK, suite, salt)
        records = [(t, blob_id(id_key, p), Codec.RAW, p, len(p)) for t, p in blobs]
        out["suites"][suite.name] = h(write_pack(cipher, records, pad_floor=512))
    out["blobs"] = [[int(t), h(p)] for t, p in blobs]
    return out


def record_vectors() -> dict[str, Any]:
    data_key = MASTER.data_key()
    tree = Tree(
        (
            Node(
                b"a.txt",
                NodeType.FILE,
                0o644,
                1000,
                1000,
                "alice",
                "alice",
                10**18,
                10**18,
                11,
                42,
                1,
                7,
                0,
                ((b"user.k", b"v"),),
                b"",
                (bytes(32),),
                None,
            ),
            Node(b"dir", NodeType.DIR, 0o755, subtree=bytes(range(32))),
            Node(b"link\xff", NodeType.SYMLINK, 0o777, target=b"a.txt"),
        )
    )
    snapshot = Snapshot(
        time_ns=1_700_000_000_123_456_789,
        host="device",
        user="root",
        paths=(b"/srv",),
        tree=blob_id(MASTER.id_key(), tree.to_bytes()),
        program="keep 0.1.0",
        tags=("daily",),
        parent=None,
        summary={"files": 1, "bytes_added": 11},
    )
    index = Index(
        packs=(IndexedPack(bytes(32), Suite.AES_256_GCM, stream(b"pack-salt", 32), ()),),
        supersedes=(),
        condemned=(bytes(range(32)),),
        forgotten=(bytes(range(32, 64)),),
    ).signed(MASTER.owner_key())  # Ed25519 signatures are deterministic
    out: dict[str, Any] = {"tree_msgpack": h(tree.to_bytes())}
    for name, kind, record in (
        ("snapshot", ObjectKind.SNAPSHOT, snapshot.to_record()),
        ("index", ObjectKind.INDEX, index.to_record()),
    ):
        plain = msgcodec.pack(record)
        # Encoding vectors seal a fixed zstd frame ("raw block" frame built by
        # hand) so they do not depend on the zstd library's choices.
        frame = zstd_raw_frame(plain)
        sealed = seal_single(data_key, kind, Suite.AES_256_GCM, stream(name.encode(), 32), frame)
        out[name] = {"msgpack": h(plain), "zstd_body": h(frame), "sealed": h(sealed)}
    return out


def zstd_raw_frame(data: bytes) -> bytes:
    """A valid zstd frame holding `data` in one raw block (RFC 8878 §3.1.1)."""
    if len(data) > 128 * 1024:
        raise ValueError("vector too large for one raw block")
    magic = (0xFD2FB528).to_bytes(4, "little")
    descriptor = bytes([0b1010_0000])  # 4-byte content size, single segment, no checksum
    fcs = len(data).to_bytes(4, "little")
    block_header = ((len(data) << 3) | (0 << 1) | 1).to_bytes(3, "little")  # last, raw
    return magic + descriptor + fcs + block_header + data


def chunker_vectors() -> dict[str, Any]:
    key = ChunkerKey(stream(b"chunker", 32))
    data = stream(b"chunker-data", 24 * 1024 * 1024)
    return {
        "chunker_key": h(key.material),
        "data": "sha256-counter-stream('chunker-data', 24 MiB)",
        "data_sha256": hashlib.sha256(data).hexdigest(),
        "lengths": Chunker(key).cut(data, final=True),
    }


def object_id_vectors() -> dict[str, Any]:
    """Object ids: BLAKE3 names new objects, SHA-256 those written before it.
    The last case is the AES-256-GCM pack of `pack.json`."""
    pack = bytes.fromhex(pack_vectors()["suites"]["AES_256_GCM"])
    data = [b"", b"abc", stream(b"object", 100_000), pack]
    return {"cases": [[h(d), object_id(d), hashlib.sha256(d).hexdigest()] for d in data]}


def padme_vectors() -> dict[str, Any]:
    lengths = [0, 1, 2, 3, 9, 100, 1000, 4097, 65_537, 1_000_000, 16 * 2**20 + 1, 2**30 + 7]
    return {"cases": [[n, padme(n)] for n in lengths]}


BUILDERS = {
    "keys": keys_vectors,
    "keyslot": keyslot_vectors,
    "blob": blob_vectors,
    "pack": pack_vectors,
    "records": record_vectors,
    "chunker": chunker_vectors,
    "object_id": object_id_vectors,
    "padme": padme_vectors,
}


def main() -> None:
    for name, build in BUILDERS.items():
        path = HERE / f"{name}.json"
        path.write_text(json.dumps(build(), indent=1, sort_keys=True) + "\n")
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
