"""The tokens topic: which device of an app holds which push token (docs/design.md §2, §12).

A token is named by its fingerprint, an HMAC under a key derived from the deployment's
key-encryption key: the same token of the same app always has the same fingerprint, on every
worker, and no one without that key can tell a fingerprint's token. Records are keyed by
[app id, fingerprint, device id] and sent to the partition of the fingerprint, so every claim
of one token lands on one partition, whose owner keeps the index and sees a duplicate.

- a claim: the device registered the token (value: its registration's event id and version);
- a release: the device no longer holds it (value: the version of the event that let go);
- a tombstone (no value): the device was forgotten; compaction then drops its records.
"""

from __future__ import annotations

import hashlib
import hmac

import msgspec

_INDEX_LABEL = b"devreg token index v1"


class Claim(msgspec.Struct, frozen=True, tag="claim"):
    registration: str  # the DeviceRegistered's event id: a supersede names it
    version: int
    occurred_at: int


class Release(msgspec.Struct, frozen=True, tag="release"):
    version: int


TokenRecord = Claim | Release
Slot = tuple[str, str, str]  # (app id, fingerprint, device id)

_encoder = msgspec.json.Encoder()
_value_decoder: msgspec.json.Decoder[TokenRecord] = msgspec.json.Decoder(TokenRecord)
_slot_decoder = msgspec.json.Decoder(tuple[str, str, str])


def index_key(kek: bytes) -> bytes:
    return hmac.new(kek, _INDEX_LABEL, hashlib.sha256).digest()


def fingerprint(key: bytes, app_id: str, token: str) -> str:
    return hmac.new(key, f"{app_id}\x00{token}".encode(), hashlib.sha256).hexdigest()


def routing_id(fp: str) -> str:
    """What stands for the device id when the fingerprint's partition is computed (the
    device's partition function, over [app id, this])."""
    return f"#token/{fp}"


def record_key(slot: Slot) -> bytes:
    return _encoder.encode(slot)


def record_value(record: TokenRecord | None) -> bytes | None:
    return None if record is None else _encoder.encode(record)


def slot_of(key: bytes | None) -> Slot | None:
    try:
        return _slot_decoder.decode(key or b"")
    except msgspec.DecodeError:
        return None


def decode_value(value: bytes) -> TokenRecord | None:
    try:
        return _value_decoder.decode(value)
    except msgspec.DecodeError:
        return None
