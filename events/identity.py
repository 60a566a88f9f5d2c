"""Deterministic identities: partition keys, event ids, registration ids and the hash chain.

Everything here is derived from its inputs alone, so a command decided twice (after a crash)
yields byte-identical events that every reader recognises and skips.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import TypeVar

import msgspec

from events.model import (
    AnyEvent,
    ChannelCreated,
    DeviceForgotten,
    DeviceRegistered,
    DeviceSuperseded,
    DeviceUnregistered,
    RegistrationExpired,
    TokenRejected,
    encode,
)

# Fixed namespace: changing it would change every id ever issued.
_NAMESPACE = uuid.UUID("6f1c2a8e-3b5d-4e7a-9c0f-1d2e3f4a5b6c")
_key_encoder = msgspec.json.Encoder()


def partition_key(app_id: str, device_id: str) -> bytes:
    """Kafka key for a device: a JSON array, so no app/device pair can collide with another."""
    return _key_encoder.encode((app_id, device_id))


def channel_key(app_id: str, channel: str) -> bytes:
    return _key_encoder.encode((app_id, "#channel", channel))


_NAMESPACE_BYTES = _NAMESPACE.bytes


def uuid5_text(name: str) -> str:
    """`str(uuid.uuid5(_NAMESPACE, name))`, in a third of its time (every command decides two
    or more ids; tests/unit/test_identity.py holds it to the standard library's)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def event_id(app_id: str, command_id: str, index: int) -> str:
    return uuid5_text(f"event\n{app_id}\n{command_id}\n{index}")


def expiry_event_id(app_id: str, device_id: str, expiration: int, version: int) -> str:
    """A `RegistrationExpired` decided from an `ExpireRegistrations`: named by the device's
    expiry itself (the event's own expiration and version), not by the command that carried
    it, so it is the same whichever other devices that command held."""
    return uuid5_text(f"expired\n{app_id}\n{device_id}\n{expiration}\n{version}")


def registration_id(app_id: str, device_id: str, channel: str) -> str:
    """Stable per (app, device, channel), upper-case UUID text as Backendless returns it."""
    return uuid5_text(f"reg\n{app_id}\n{device_id}\n{channel}").upper()


def event_hash(event: AnyEvent) -> str:
    """SHA-256 of the canonical encoding with `hash` itself left out (it is a default)."""
    unsealed = msgspec.structs.replace(event, hash="")
    return hashlib.sha256(encode(unsealed)).hexdigest()


E = TypeVar(
    "E",
    DeviceRegistered,
    ChannelCreated,
    DeviceUnregistered,
    RegistrationExpired,
    TokenRejected,
    DeviceSuperseded,
    DeviceForgotten,
)


def seal(event: E) -> E:
    """The event with its `hash` filled in."""
    return msgspec.structs.replace(event, hash=event_hash(event))
