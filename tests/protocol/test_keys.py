"""KDF policy, key slots and recovery keys."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keep.protocol.errors import FormatError, IntegrityError, KdfPolicyError, RecoveryKeyError
from keep.protocol.kdf import DEFAULT_PARAMS, DEFAULT_POLICY, KdfParams, derive_password_key
from keep.protocol.keys import Kek, MasterKey, RecoveryKey
from keep.protocol.keyslot import KeySlot, SlotKind
from keep.protocol.recovery import decode_recovery_key, encode_recovery_key

SALT = bytes(32)


def test_defaults_meet_rfc9106_second_recommendation() -> None:
    assert DEFAULT_PARAMS.memory_kib >= 64 * 1024
    assert DEFAULT_PARAMS.iterations >= 3
    assert DEFAULT_PARAMS.parallelism >= 4
    DEFAULT_POLICY.check(DEFAULT_PARAMS)


@pytest.mark.parametrize(
    "params",
    [
        KdfParams(memory_kib=8, iterations=1, parallelism=1),  # downgrade
        KdfParams(memory_kib=64 * 1024, iterations=1, parallelism=4),
        KdfParams(memory_kib=32 * 1024, iterations=10, parallelism=4),
        KdfParams(memory_kib=64 * 1024, iterations=3, parallelism=4, algorithm="pbkdf2"),
    ],
)
def test_client_refuses_parameters_below_the_floor(params: KdfParams) -> None:
    with pytest.raises(KdfPolicyError):
        derive_password_key(b"pw", SALT, params)


@pytest.mark.parametrize(
    "params",
    [
        KdfParams(memory_kib=64 * 1024 * 1024, iterations=3, parallelism=4),  # 64 GiB
        KdfParams(memory_kib=64 * 1024, iterations=10_000, parallelism=4),
        KdfParams(memory_kib=64 * 1024, iterations=3, parallelism=4096),
    ],
)
def test_client_refuses_parameters_above_the_ceiling(params: KdfParams) -> None:
    with pytest.raises(KdfPolicyError, match=r"ceiling|range"):
        derive_password_key(b"pw", SALT, params)


def test_kdf_params_from_json_rejects_bad_types() -> None:
    bad_inputs: list[object] = [
        {},
        {"algorithm": "argon2id", "memory_kib": "1", "iterations": 3, "parallelism": 4},
        {"algorithm": "argon2id", "memory_kib": True, "iterations": 3, "parallelism": 4},
        [],
    ]
    for bad in bad_inputs:
        with pytest.raises(FormatError):
            KdfParams.from_json(bad)
    assert KdfParams.from_json(DEFAULT_PARAMS.to_json()) == DEFAULT_PARAMS


def test_keyslot_unwraps_only_with_its_kek_account_and_kind() -> None:
    master = MasterKey(bytes(range(64)))
    kek = Kek(bytes(32))
    slot = KeySlot.wrap(kek, master, "alice", SlotKind.PASSWORD, SALT)
    assert slot.unwrap(kek, "alice") == master
    with pytest.raises(IntegrityError):
        slot.unwrap(Kek(bytes([1]) * 32), "alice")
    with pytest.raises(IntegrityError):
        slot.unwrap(kek, "mallory")  # served for another account
    relabelled = KeySlot(SlotKind.RECOVERY, slot.salt, slot.wrapped)
    with pytest.raises(IntegrityError):
        relabelled.unwrap(kek, "alice")
    assert KeySlot.from_json(slot.to_json()) == slot


def test_keyslot_json_rejects_malformed_fields() -> None:
    good = KeySlot.wrap(Kek(bytes(32)), MasterKey(bytes(64)), "a", SlotKind.PASSWORD, SALT).to_json()
    for key, value in (("salt", "AAAA"), ("wrapped", "!!"), ("kind", "other"), ("version", 2)):
        with pytest.raises(FormatError):
            KeySlot.from_json({**good, key: value})


def test_keys_never_show_their_bytes() -> None:
    master = MasterKey(bytes(range(64)))
    assert "00010203" not in repr(master)
    assert "redacted" in repr(master.data_key())


@given(st.binary(min_size=32, max_size=32))
def test_recovery_key_text_round_trip(raw: bytes) -> None:
    key = RecoveryKey(raw)
    text = encode_recovery_key(key)
    assert decode_recovery_key(text) == key
    assert decode_recovery_key(text.lower().replace("-", " ")) == key


def test_recovery_key_accepts_lookalikes() -> None:
    key = RecoveryKey(bytes(32))
    text = encode_recovery_key(key)
    assert "0" in text
    assert decode_recovery_key(text.replace("0", "O")) == key


def test_recovery_key_typo_is_caught_by_checksum() -> None:
    key = RecoveryKey(bytes(range(32)))
    text = encode_recovery_key(key)
    caught = 0
    body_start = len("RK1-")
    for i in range(body_start, len(text)):
        if text[i] == "-":
            continue
        replacement = "2" if text[i] != "2" else "3"
        with pytest.raises(RecoveryKeyError):
            decode_recovery_key(text[:i] + replacement + text[i + 1 :])
        caught += 1
    assert caught == 56
    with pytest.raises(RecoveryKeyError):
        decode_recovery_key(text[:-1])
