"""Session tokens are never kept (docs/security.md): only a keyed fingerprint of one.

The Backendless SDKs send the signed-in user's session token (`user-token` header) with every
call. Whoever holds it acts as that user at Backendless, so devreg keeps what an audit needs and
nothing more: "the same session did both", never the token. The fingerprint is

    "<kid>:" + base64url(HMAC-SHA-256(key[kid], PURPOSE 0x00 app_id 0x00 token)[:16])

keyed (so no one without the key can test guesses against it), bound to the app and to this
purpose, truncated to 128 bits, and named by its key id so keys can rotate: the first key of
DEVREG_TOKEN_KEYS signs, the others are kept to check older fingerprints. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from typing import TypeVar

import msgspec

from events.model import (
    AnyCommand,
    AnyEvent,
    DeviceRegistered,
    DeviceUnregistered,
    decode_event,
    encode,
)

PURPOSE = b"devreg/user-token/v1"
REDACTED = "[redacted]"  # what an output shows of a raw token found in an old event
MIN_KEY_BYTES = 32
_KID = re.compile(r"^[A-Za-z0-9]{1,16}$")


class TokenKeys:
    """The fingerprint keys, by id; the first is current. Never shown in a repr."""

    def __init__(self, keys: dict[str, bytes]):
        if not keys:
            raise ValueError("no fingerprint key")
        self._keys = dict(keys)
        self.current = next(iter(keys))

    @classmethod
    def parse(cls, spec: str) -> TokenKeys:
        """`kid:base64[,kid:base64…]`, each key at least 32 bytes; ValueError names the entry
        by its position and id, never by its key."""
        keys: dict[str, bytes] = {}
        for number, item in enumerate((i.strip() for i in spec.split(",")), start=1):
            kid, _, encoded = item.partition(":")
            try:
                key = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                key = b""
            if not _KID.match(kid) or len(key) < MIN_KEY_BYTES or kid in keys:
                raise ValueError(
                    f"entry {number} is not <key id>:<base64 of {MIN_KEY_BYTES} bytes or more>"
                    " with a key id of letters and digits, named once"
                )
            keys[kid] = key
        return cls(keys)

    def spec(self) -> str:
        """The keys in DEVREG_TOKEN_KEYS form (to write a key file, never to log)."""
        return ",".join(
            f"{kid}:{base64.b64encode(key).decode()}" for kid, key in self._keys.items()
        )

    def __repr__(self) -> str:
        return f"TokenKeys(kids={list(self._keys)}, current={self.current!r})"

    def fingerprint(self, app_id: str, token: str, kid: str | None = None) -> str:
        kid = kid or self.current
        message = b"\0".join((PURPOSE, app_id.encode(), token.encode("utf-8", "replace")))
        mac = hmac.new(self._keys[kid], message, hashlib.sha256).digest()[:16]
        return f"{kid}:{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"

    def matches(self, app_id: str, token: str, fingerprint: str) -> bool:
        """Audit: was `token` the one fingerprinted? With any key still held."""
        kid = fingerprint.partition(":")[0]
        if kid not in self._keys:
            return False
        return hmac.compare_digest(self.fingerprint(app_id, token, kid), fingerprint)


C = TypeVar("C", bound=AnyCommand)


def without_raw_token(command: C, keys: TokenKeys | None) -> C:
    """The command with its raw `user_token` (a Kafka publisher may have written one) replaced
    by its fingerprint, before it is decided: no event ever holds a raw token. Deterministic
    for given keys, so a command decided again re-emits the same events."""
    if command.user_token is None:
        return command
    if command.user_token and keys is None:
        raise ValueError("a command carries a user token, and no fingerprint key is configured")
    fingerprint = (
        keys.fingerprint(command.app_id, command.user_token)
        if keys is not None and command.user_token
        else None
    )
    return msgspec.structs.replace(command, user_token=None, user_token_fingerprint=fingerprint)


E = TypeVar("E", bound=AnyEvent)


def redacted(event: E) -> E:
    """An event fit to show: an old event's raw session token replaced by REDACTED. (Its
    `hash` covers the original: check chains on the log, before redacting.)"""
    if isinstance(event, DeviceRegistered | DeviceUnregistered) and event.user_token:
        return msgspec.structs.replace(event, user_token=REDACTED)
    return event


def redacted_json(raw: bytes) -> bytes:
    """`redacted` for an event's canonical JSON; the bytes unchanged when there is nothing to
    redact (nearly always: only events written before fingerprints carry a token)."""
    if b'"user_token"' not in raw:
        return raw
    return encode(redacted(decode_event(raw)))
