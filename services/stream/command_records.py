"""A commands record before it is decided: the command it holds (or a dead letter), the
devices and channels its decision needs, and whether it came through the right partition."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from events import AnyCommand, ExpireRegistrations, RegisterDevice, decode_command, rules
from events.user_tokens import TokenKeys, without_raw_token
from projections.positions import Record
from services.config import Settings
from services.stream.batch_sender import Dead

Key = tuple[str, str]


class Channels:
    """`in` test for decide(): channels known for one app, before or during this batch."""

    def __init__(self, app_id: str, known: set[Key], added: set[Key]):
        self.app_id, self.known, self.added = app_id, known, added

    def __contains__(self, channel: object) -> bool:
        key = (self.app_id, str(channel))
        return key in self.known or key in self.added


def parse(record: Record, tokens: TokenKeys | None) -> AnyCommand | Dead:
    try:
        command = decode_command(record.value or b"")
    except msgspec.DecodeError as exc:
        return Dead(record, f"undecodable command: {exc}")
    if command.issued_at is None:
        # A producer that did not stamp the command: the record's own time is in the log too.
        command = msgspec.structs.replace(command, issued_at=record.timestamp)
    # The commands topic holds whatever a publisher wrote, raw session tokens included; no
    # event may: they become fingerprints before anything is decided.
    return without_raw_token(command, tokens)


def device_keys(command: AnyCommand) -> list[Key]:
    """The devices whose state deciding `command` needs."""
    if isinstance(command, ExpireRegistrations):
        return [(command.app_id, due.device_id) for due in command.devices]
    return [(command.app_id, command.device_id)]


def channel_keys(command: AnyCommand) -> list[Key]:
    if isinstance(command, RegisterDevice):
        names = command.channels or (rules.DEFAULT_CHANNEL,)
        return [(command.app_id, name) for name in names]
    return []


def misdirected(
    settings: Settings,
    partition_of: Callable[[str, str], int],
    record: Record,
    command: AnyCommand,
) -> rules.Rejection | None:
    """A command for an app devreg does not serve, or naming a device of another partition
    than the one it came through. All of a device's commands must come through the one
    partition its events go to: one elsewhere would fork the device's history across two
    partitions, in an order no reader can know, and stop the projector at the apparent gap.
    A command of many devices (ExpireRegistrations) is refused whole if any is elsewhere."""
    if command.app_id not in settings.apps:
        return rules.Rejection(rules.UNKNOWN_APP, f"Unknown application id {command.app_id!r}")
    for app_id, device_id in device_keys(command):
        expected = partition_of(app_id, device_id)
        if record.partition != expected:
            named = f" (device {device_id!r})" if isinstance(command, ExpireRegistrations) else ""
            message = (
                f"Command on partition {record.partition} of {record.topic}; the device's is"
                f" {expected}{named}: publish it keyed by [app_id, device_id] with Kafka's"
                " default (murmur2) partitioner"
            )
            return rules.Rejection(rules.INVALID_REQUEST, message)
    return None
