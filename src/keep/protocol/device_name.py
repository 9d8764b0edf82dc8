"""Device names, sealed so the server holds no host names (docs/format.md §10).

The server stores a device's name for the owner's device list; the name is
typically the host name. The client sends it sealed:

    "k1." + base64url(nonce(12) || AES-256-GCM(K, nonce, name, ad=LABEL))
    K = HKDF-SHA256(data key, info=LABEL), LABEL = b"keep/v1/device-name"

so it is at most 4/3 x (28 + name bytes) + 3 characters: names of up to
NAME_MAX (48) bytes fit the server's limit. Only holders of the data key (the
owner and enrolled devices) read it. A name that does not start with "k1."
was stored in clear by an older client and is shown as it is.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keep.protocol.keys import DataKey, hkdf

LABEL = b"keep/v1/device-name"
PREFIX = "k1."
NAME_MAX = 48  # bytes of UTF-8 before sealing
NONCE_SIZE = 12


def _aead(data_key: DataKey) -> AESGCM:
    return AESGCM(hkdf(data_key.material, LABEL))


def seal_device_name(data_key: DataKey, name: str, nonce: bytes) -> str:
    """`nonce`: NONCE_SIZE random bytes from the caller (this module stays pure)."""
    if len(nonce) != NONCE_SIZE:
        raise ValueError("the nonce must be 12 random bytes")
    raw = name.encode()[:NAME_MAX].decode(errors="ignore")  # cut on a character boundary
    sealed = nonce + _aead(data_key).encrypt(nonce, raw.encode(), LABEL)
    return PREFIX + base64.urlsafe_b64encode(sealed).decode().rstrip("=")


def open_device_name(data_key: DataKey, stored: str) -> str:
    """The name as the owner gave it; "(unreadable name)" if it does not open
    with this account's key; an old clear name as it is."""
    if not stored.startswith(PREFIX):
        return stored
    try:
        text = stored[len(PREFIX) :]
        sealed = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        plain = _aead(data_key).decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], LABEL)
        return plain.decode()
    except (InvalidTag, ValueError, binascii.Error, UnicodeDecodeError):
        return "(unreadable name)"
