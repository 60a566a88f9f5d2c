"""Which fields of a command are personal data, and sealing them (docs/design.md §12).

The HTTP edge seals a command's personal fields before it publishes the command; the command
processor seals those of a command a Kafka publisher sent raw, and publishes the sealed copy
in its place. Every event copies sealed text from a command, never a raw value, so a command
decided again (after a crash, or by a worker that takes the partition over) re-emits
byte-identical events even after the device's keys were erased.
"""

from __future__ import annotations

import msgspec

from events import AnyCommand, sealed
from services.keys.keyring import Keyring

# Field name -> the label it is sealed under. A reported token is sealed as a device token,
# so the two compare equal when they hold the same token under the same key. A raw session
# token never gets this far: it becomes a fingerprint first (events/user_tokens.py), and the
# fingerprint is sealed.
PERSONAL_FIELDS = {
    "device_token": "device_token",
    "user_token_fingerprint": "user_token_fingerprint",
}


def raw_fields(command: AnyCommand) -> list[str]:
    """The command's personal fields that hold a value not sealed yet."""
    found = []
    for name in PERSONAL_FIELDS:
        value = getattr(command, name, None)
        if value and not sealed.is_sealed(value):
            found.append(name)
    return found


def seal_command(keyring: Keyring, command: AnyCommand, key: tuple[str, bytes]) -> AnyCommand:
    # The device token is what a read of the device opens next: remembered as opened. One
    # value per device is remembered, so not the fingerprint, which no read answers with.
    changes = {
        name: keyring.seal(
            command.app_id,
            command.device_id,
            PERSONAL_FIELDS[name],
            getattr(command, name),
            key,
            remember=name == "device_token",
        )
        for name in raw_fields(command)
    }
    return msgspec.structs.replace(command, **changes) if changes else command


async def seal_personal(keyring: Keyring, command: AnyCommand) -> AnyCommand:
    """`command` with its personal fields sealed under the device's current key (created,
    durable and published, if the device has none)."""
    if not raw_fields(command):
        return command
    key = await keyring.ensure(command.app_id, command.device_id)
    return seal_command(keyring, command, key)
