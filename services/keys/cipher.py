"""The one adapter of the `cryptography` package: data keys, sealing, and key wrapping.

Sealing is AES-256-GCM with a synthetic nonce: the nonce is an HMAC of the value under the
data key (with the value's context), so sealing is deterministic. That is what decisions
need: a command decided again after a crash re-emits byte-identical events, and two sealings
of one token under one key compare equal (events/sealed.py). The associated data binds a
sealed value to its app, device and field, so a value cannot be moved to another device.

Wrapping (a data key under the deployment's key-encryption key) uses a random nonce: a
wrapped key is written once, and nothing compares two wrappings.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from events import sealed

KEY_BYTES = 32
NONCE_BYTES = 12
_aad_encoder = msgspec.json.Encoder()
_URLSAFE = bytes.maketrans(b"-_", b"+/")


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def new_key_id(now_ms: int) -> str:
    """`<created ms>-<random>`: decide() reads the creation time (events/sealed.py)."""
    return f"{now_ms}-{secrets.token_hex(8)}"


def context(app_id: str, device_id: str, field: str) -> bytes:
    return _aad_encoder.encode((app_id, device_id, field))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    # binascii itself: urlsafe_b64decode's wrappers cost as much again, once per token opened
    # (a page opens a hundred).
    return binascii.a2b_base64((text + "=" * (-len(text) % 4)).encode().translate(_URLSAFE))


def seal(key_id: str, key: bytes, aad: bytes, value: str) -> str:
    plain = value.encode()
    nonce = hmac.new(key, b"nonce\x00" + aad + b"\x00" + plain, hashlib.sha256).digest()
    nonce = nonce[:NONCE_BYTES]
    return f"{sealed.PREFIX}{key_id}:{_b64(nonce + AESGCM(key).encrypt(nonce, plain, aad))}"


def open_sealed(text: str, key: bytes, aad: bytes) -> str | None:
    """The value, or None if `text` was not sealed with `key` for this context."""
    body = text.rpartition(":")[2]
    try:
        raw = _unb64(body)
        plain = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad)
        return plain.decode()
    except (InvalidTag, ValueError):  # binascii.Error is a ValueError
        return None


def wrap(kek: bytes, key: bytes, aad: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(kek).encrypt(nonce, key, aad)


def unwrap(kek: bytes, wrapped: bytes, aad: bytes) -> bytes:
    """Raises KeyUnreadable if the key-encryption key is not the one that wrapped it."""
    try:
        return AESGCM(kek).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)
    except (InvalidTag, ValueError) as exc:
        raise KeyUnreadable("a data key does not unwrap: is DEVREG_KEK the right key?") from exc


class KeyUnreadable(RuntimeError):
    """A wrapped data key cannot be unwrapped with this deployment's key-encryption key."""
