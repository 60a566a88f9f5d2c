"""The text form of a personal value sealed with a device's data key (docs/design.md §12).

A push token or a user token is never decided, logged or stored in the clear: the HTTP edge
(or, for a raw value a Kafka publisher sent, the command processor) seals it with the device's
data key, and every event and store holds the sealed text. Forgetting a device deletes its
keys, which leaves every copy of the sealed text unreadable (crypto-shredding).

Pure: this module only reads the text form; sealing and opening live in services/keys/.
Sealing is deterministic (the nonce is derived from the key, the field and the value), so the
same token under the same key always has the same sealed text: decide() compares tokens by
their sealed text, and needs no key.
"""

from __future__ import annotations

PREFIX = "sealed:1:"
# What a reader shows for a sealed value whose key was erased (a forgotten device).
ERASED = "(erased)"
# A sealed 500-character value is ~700 characters; anything much longer is not one of ours.
MAX_SEALED_LENGTH = 2048


def is_sealed(text: str | None) -> bool:
    return bool(text) and text.startswith(PREFIX)  # type: ignore[union-attr]


def key_id(text: str) -> str | None:
    """The id of the key a sealed text was sealed with; None for anything else."""
    if not is_sealed(text):
        return None
    kid, sep, body = text[len(PREFIX) :].partition(":")
    return kid if sep and kid and body else None


def key_created_at(kid: str) -> int | None:
    """Key ids begin with the key's creation time (ms): `<created ms>-<random hex>`."""
    created, sep, rest = kid.partition("-")
    return int(created) if sep and rest and created.isdigit() else None


def well_formed(text: str) -> bool:
    kid = key_id(text)
    return kid is not None and key_created_at(kid) is not None and len(text) <= MAX_SEALED_LENGTH
