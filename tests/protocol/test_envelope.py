from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keep.protocol.envelope import (
    HEADER,
    Header,
    ObjectCipher,
    ObjectKind,
    Role,
    Suite,
    frame_ad,
    open_single,
    seal_single,
)
from keep.protocol.errors import FormatError, IntegrityError, KeepError
from keep.protocol.keys import MasterKey, RepositoryKeys

SALT = bytes(range(32))


@pytest.mark.parametrize("suite", list(Suite))
def test_single_object_round_trip(keys: RepositoryKeys, suite: Suite) -> None:
    sealed = seal_single(keys.data, ObjectKind.SNAPSHOT, suite, SALT, b"body")
    assert open_single(keys.data, ObjectKind.SNAPSHOT, sealed) == b"body"


def test_every_flipped_bit_is_detected(keys: RepositoryKeys) -> None:
    sealed = seal_single(keys.data, ObjectKind.INDEX, Suite.AES_256_GCM, SALT, b"index body")
    for bit in range(len(sealed) * 8):
        damaged = bytearray(sealed)
        damaged[bit // 8] ^= 1 << (bit % 8)
        # Structural header bytes (magic, version, reserved, unknown suite)
        # are FormatError; everything authenticated is IntegrityError.
        expected = IntegrityError if bit // 8 >= 8 else (FormatError, IntegrityError)
        with pytest.raises(expected):
            open_single(keys.data, ObjectKind.INDEX, bytes(damaged))


def test_every_truncation_is_refused(keys: RepositoryKeys) -> None:
    sealed = seal_single(keys.data, ObjectKind.INDEX, Suite.AES_256_GCM, SALT, b"index body")
    for cut in range(len(sealed)):
        with pytest.raises(KeepError):
            open_single(keys.data, ObjectKind.INDEX, sealed[:cut])


def test_object_of_another_kind_is_refused(keys: RepositoryKeys) -> None:
    sealed = seal_single(keys.data, ObjectKind.LOCK, Suite.AES_256_GCM, SALT, b"x")
    with pytest.raises(IntegrityError):
        open_single(keys.data, ObjectKind.SNAPSHOT, sealed)
    # Relabelling the header's kind byte does not help: the key and AD differ.
    relabelled = bytearray(sealed)
    relabelled[5] = ObjectKind.SNAPSHOT
    with pytest.raises(IntegrityError):
        open_single(keys.data, ObjectKind.SNAPSHOT, bytes(relabelled))


def test_frame_moved_to_another_object_or_position_is_refused(keys: RepositoryKeys) -> None:
    a = ObjectCipher.new(keys.data, ObjectKind.PACK, Suite.AES_256_GCM, SALT)
    b = ObjectCipher.new(keys.data, ObjectKind.PACK, Suite.AES_256_GCM, bytes(32))
    ad0 = frame_ad(ObjectKind.PACK, Role.BLOB, 0)
    sealed = a.seal(0, b"payload", ad0)
    assert a.open(0, sealed, ad0) == b"payload"
    with pytest.raises(IntegrityError):
        b.open(0, sealed, ad0)  # another object (salt)
    with pytest.raises(IntegrityError):
        a.open(1, sealed, frame_ad(ObjectKind.PACK, Role.BLOB, 1))  # another position
    with pytest.raises(IntegrityError):
        a.open(0, sealed, frame_ad(ObjectKind.PACK, Role.TOC, 0))  # another role


def test_wrong_key_is_integrity_error(keys: RepositoryKeys) -> None:
    sealed = seal_single(keys.data, ObjectKind.INDEX, Suite.CHACHA20_POLY1305, SALT, b"x")
    other = MasterKey(bytes(64)).data_key()
    with pytest.raises(IntegrityError):
        open_single(other, ObjectKind.INDEX, sealed)


@given(st.binary(max_size=200))
def test_header_decoder_raises_only_format_error(data: bytes) -> None:
    try:
        header = Header.from_bytes(data)
    except FormatError:
        return
    assert header.to_bytes() == data[: HEADER.size]
