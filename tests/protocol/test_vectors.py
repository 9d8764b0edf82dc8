"""Known-answer vectors: the stored JSON must equal what the code builds today,
and the stored bytes must decode to the stated plaintext."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from keep.protocol import msgcodec
from keep.protocol.compression import BlobDecompressor
from keep.protocol.device_name import open_device_name, seal_device_name
from keep.protocol.envelope import ObjectKind, open_single
from keep.protocol.errors import FormatError
from keep.protocol.index import Index
from keep.protocol.keys import Kek, MasterKey, OwnerPublicKey, RecoveryKey
from keep.protocol.keyslot import KeySlot
from keep.protocol.limits import DEVICE_NAME_MAX
from keep.protocol.object_id import is_named_by, object_id
from keep.protocol.pack import PackReader
from keep.protocol.recovery import decode_recovery_key
from keep.protocol.snapshot import Snapshot
from keep.protocol.tree import Tree
from tests.vectors import make_vectors

VECTORS = Path(make_vectors.__file__).parent


def load(name: str) -> Any:
    return json.loads((VECTORS / f"{name}.json").read_text())


@pytest.mark.parametrize("name", sorted(make_vectors.BUILDERS))
def test_vectors_match_the_code(name: str) -> None:
    assert make_vectors.BUILDERS[name]() == load(name)


def test_object_id_vectors_name_their_bytes_and_nothing_else() -> None:
    cases = load("object_id")["cases"]
    # BLAKE3's published hashes of "" and "abc": the library is the real BLAKE3.
    assert cases[0][1] == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    assert cases[1][1] == "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
    for data_hex, by_blake3, by_sha256 in cases:
        data = bytes.fromhex(data_hex)
        assert object_id(data) == by_blake3
        assert is_named_by(data, by_blake3)
        assert is_named_by(data, by_sha256)
        tampered = data[:-1] + bytes([data[-1] ^ 1]) if data else b"\0"
        assert not is_named_by(tampered, by_blake3)
        assert not is_named_by(tampered, by_sha256)
        assert not is_named_by(data, by_blake3[::-1])


def test_keyslot_vector_unwraps_to_the_master_key() -> None:
    v = load("keyslot")
    slot = KeySlot.from_json(v["slot"])
    master = slot.unwrap(Kek(bytes.fromhex(v["kek"])), v["account"])
    assert master.material == bytes(range(64))


def test_recovery_vector_decodes() -> None:
    v = load("keys")
    assert decode_recovery_key(v["recovery_text"]) == RecoveryKey(bytes.fromhex(v["recovery_key"]))


def test_pack_vectors_decode_to_their_blobs() -> None:
    v = load("pack")
    master = MasterKey(bytes(range(64)))
    for sealed_hex in v["suites"].values():
        data = bytes.fromhex(sealed_hex)
        reader = PackReader.open(master.data_key(), data)
        got = [
            (int(e.blob_type), reader.blob(e, data, master.id_key(), BlobDecompressor()).hex())
            for e in reader.entries
        ]
        assert got == [(t, p) for t, p in v["blobs"]]
        assert len(data) == v["pad_floor"]


def test_record_vectors_decode() -> None:
    v = load("records")
    data_key = MasterKey(bytes(range(64))).data_key()
    assert Tree.from_bytes(bytes.fromhex(v["tree_msgpack"])).nodes[2].name == b"link\xff"
    snap = Snapshot.open(data_key, bytes.fromhex(v["snapshot"]["sealed"]))
    assert msgcodec.pack(snap.to_record()).hex() == v["snapshot"]["msgpack"]
    index = Index.open(data_key, bytes.fromhex(v["index"]["sealed"]))
    assert msgcodec.pack(index.to_record()).hex() == v["index"]["msgpack"]
    body = open_single(data_key, ObjectKind.INDEX, bytes.fromhex(v["index"]["sealed"]))
    assert body.hex() == v["index"]["zstd_body"]


def test_index_owner_signature_known_answer_and_tampering() -> None:
    """The stored index record verifies under the stored owner public key;
    any change to what it condemns or forgets, another owner's key, a
    device-written copy without the signature, or a version 2 record with
    the same lists do not."""
    owner = OwnerPublicKey(bytes.fromhex(load("keys")["owner_public_key"]))
    record = msgcodec.unpack(bytes.fromhex(load("records")["index"]["msgpack"]), 1 << 20)
    index = Index.from_record(record)
    assert index.has_control
    assert index.owner_signed(owner)
    other = MasterKey(bytes(64)).owner_key().public()
    assert not index.owner_signed(other)
    flipped = bytes([index.condemned[0][0] ^ 1]) + index.condemned[0][1:]
    assert not dataclasses.replace(index, condemned=(flipped,)).owner_signed(owner)
    assert not dataclasses.replace(index, forgotten=()).owner_signed(owner)
    assert not dataclasses.replace(index, signature=b"").owner_signed(owner)
    assert not Index.from_record([2, *record[1:5]]).owner_signed(owner)
    with pytest.raises(FormatError):
        Index.from_record([*record[:5], b"x" * 65])


def test_device_names_are_sealed_and_tampering_shows() -> None:
    key = MasterKey(bytes(range(64))).data_key()
    sealed = seal_device_name(key, "living-room-server", bytes(12))
    assert sealed == seal_device_name(key, "living-room-server", bytes(12))  # deterministic given the nonce
    assert sealed.startswith("k1.")
    assert "living" not in sealed
    assert len(seal_device_name(key, "x" * 200, bytes(12))) <= DEVICE_NAME_MAX
    assert open_device_name(key, sealed) == "living-room-server"
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    assert open_device_name(key, flipped) == "(unreadable name)"
    assert open_device_name(MasterKey(bytes(64)).data_key(), sealed) == "(unreadable name)"
    assert open_device_name(key, "old clear name") == "old clear name"


SNAPSHOT_SIGNATURE = (
    "5c9f572b72a37f15ad28acd1b3bc4eede38a5ab23b23abad5da72fb8f13801ee"
    "89b97a38214bc645df84789dc93d30398f705b03081a3d1768cacadd2c7c9702"
)


def test_snapshot_owner_signature_known_answer_and_tampering() -> None:
    """The vector snapshot signed by the vector owner (Ed25519 is
    deterministic) gives this signature, over the context string and the
    record without `signature` — checked here with the cryptography library
    directly. An unsigned snapshot's bytes have no `signature` key (the
    stored vector decodes and re-encodes unchanged); any change to a signed
    one, another owner's key or a made-up signature do not verify."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from keep.protocol.snapshot import SIGNED_CONTEXT

    record = msgcodec.unpack(bytes.fromhex(load("records")["snapshot"]["msgpack"]), 1 << 20)
    snapshot = Snapshot.from_record(record)
    assert "signature" not in snapshot.to_record()
    signed = snapshot.signed(MasterKey(bytes(range(64))).owner_key())
    assert signed.signature.hex() == SNAPSHOT_SIGNATURE
    public = bytes.fromhex(load("keys")["owner_public_key"])
    Ed25519PublicKey.from_public_bytes(public).verify(
        signed.signature, SIGNED_CONTEXT + msgcodec.pack(record)
    )
    owner = OwnerPublicKey(public)
    assert signed.owner_signed(owner)
    again = Snapshot.from_record(msgcodec.unpack(msgcodec.pack(signed.to_record()), 1 << 20))
    assert again == signed
    assert again.owner_signed(owner)
    assert not snapshot.owner_signed(owner)
    assert not dataclasses.replace(signed, time_ns=signed.time_ns - 1).owner_signed(owner)
    assert not dataclasses.replace(signed, tags=("other",)).owner_signed(owner)
    assert not dataclasses.replace(signed, signature=bytes(64)).owner_signed(owner)
    assert not signed.owner_signed(MasterKey(bytes(64)).owner_key().public())
    with pytest.raises(FormatError):
        Snapshot.from_record({**record, "signature": b"x" * 63})
