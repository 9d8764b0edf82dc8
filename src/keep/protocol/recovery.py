"""Recovery keys in their printable form (docs/format.md §3.3).

A recovery key is 256 random bits. Its text form is Crockford base32 of the key
followed by a 24-bit checksum, in 14 groups of 4 characters:

    RK1-XXXX-XXXX-…-XXXX

Decoding is forgiving where people err (case, spaces or dashes, I/L for 1,
O for 0) and strict where it matters: a wrong character is caught by the
checksum before any network call (a one-in-16-million miss rate).
"""

from __future__ import annotations

import base64
import hashlib

from keep.protocol.errors import RecoveryKeyError
from keep.protocol.keys import RecoveryKey

PREFIX = "RK1"
GROUP = 4
CHECKSUM_SIZE = 3
CHECKSUM_LABEL = b"keep/v1/recovery-checksum"
_RFC4648 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TO_CROCKFORD = str.maketrans(_RFC4648, _CROCKFORD)
_FROM_CROCKFORD = str.maketrans(_CROCKFORD, _RFC4648)
_ALIASES = str.maketrans({"I": "1", "L": "1", "O": "0", "U": "V"})
ENCODED_LENGTH = 56  # (32 + 3) bytes * 8 / 5


def _checksum(key: bytes) -> bytes:
    return hashlib.sha256(CHECKSUM_LABEL + key).digest()[:CHECKSUM_SIZE]


def encode_recovery_key(key: RecoveryKey) -> str:
    text = base64.b32encode(key.material + _checksum(key.material)).decode()
    text = text.translate(_TO_CROCKFORD)
    groups = [text[i : i + GROUP] for i in range(0, len(text), GROUP)]
    return "-".join([PREFIX, *groups])


def decode_recovery_key(text: str) -> RecoveryKey:
    cleaned = "".join(ch for ch in text.upper() if ch.isalnum())
    if cleaned.startswith(PREFIX):
        cleaned = cleaned[len(PREFIX) :]
    cleaned = cleaned.translate(_ALIASES)
    if len(cleaned) != ENCODED_LENGTH:
        raise RecoveryKeyError(
            f"a recovery key has {ENCODED_LENGTH} characters after {PREFIX}; this one has {len(cleaned)}"
        )
    if any(ch not in _CROCKFORD for ch in cleaned):
        raise RecoveryKeyError("the recovery key contains a character that is not allowed")
    raw = base64.b32decode(cleaned.translate(_FROM_CROCKFORD))
    key, checksum = raw[:-CHECKSUM_SIZE], raw[-CHECKSUM_SIZE:]
    if _checksum(key) != checksum:
        raise RecoveryKeyError("the recovery key has a typo (its checksum does not match)")
    return RecoveryKey(key)
