"""The fold of events into projection rows: one function per event type, one dispatch table.

The fold works on an in-memory `Changes` set (the batch's latest row per key), so a batch is
written with a handful of bulk statements. The live projector, rebuild, replay and
point-in-time queries all run this same fold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from events import (
    AnyEvent,
    ChannelCreated,
    DeviceEvent,
    DeviceForgotten,
    DeviceRegistered,
    DeviceSuperseded,
    DeviceUnregistered,
    RegistrationExpired,
    Removal,
    TokenRejected,
)

DeviceKey = tuple[str, str]
SubKey = tuple[str, str, str]


class ProjectionError(RuntimeError):
    """An event cannot be applied (a gap or a broken hash chain): the projector stops."""


class DeviceRow(msgspec.Struct, kw_only=True):
    app_id: str
    device_id: str
    device_token: str
    os: str
    os_version: str
    version: int
    last_hash: str
    registered_at: int
    updated_at: int


class SubRow(msgspec.Struct, kw_only=True):
    registration_id: str
    expiration: int | None
    subscribed_at: int


class Changes:
    """Rows touched by a batch. `known` holds the rows as stored before the batch."""

    def __init__(self, known: dict[DeviceKey, DeviceRow]):
        self.known = known
        self.devices: dict[DeviceKey, DeviceRow] = {}
        self.subs: dict[SubKey, SubRow | None] = {}  # None: delete
        self.channels: dict[tuple[str, str], int] = {}
        self.applied = 0
        self.duplicates = 0
        # The events partition each device's events come from: where its rows belong when
        # several workers split the partitions. Not part of the fold: it is where, not what.
        self.partitions: dict[DeviceKey, int] = {}
        # Applied device events, kept per device for the history and as-of queries.
        self.history: list[DeviceEvent] = []
        # The bytes each event had in the log, by event id: the history keeps them verbatim
        # (a newer writer's fields included) and a rebuild need not encode a million events.
        self.logged: dict[str, bytes] = {}

    def device(self, key: DeviceKey) -> DeviceRow | None:
        return self.devices.get(key) or self.known.get(key)


def _registered(changes: Changes, event: DeviceRegistered, current: DeviceRow | None) -> None:
    key = (event.app_id, event.device_id)
    changes.devices[key] = DeviceRow(
        app_id=event.app_id,
        device_id=event.device_id,
        device_token=event.device_token,
        os=event.os,
        os_version=event.os_version,
        version=event.version,
        last_hash=event.hash,
        registered_at=current.registered_at if current else event.occurred_at,
        updated_at=event.occurred_at,
    )
    for channel in event.channels:
        changes.subs[(*key, channel)] = SubRow(
            registration_id=event.registration_ids[channel],
            expiration=event.expiration,
            subscribed_at=event.occurred_at,
        )


def _removed(changes: Changes, event: Removal | DeviceForgotten, current: DeviceRow | None) -> None:
    if current is None:
        raise ProjectionError(f"{event.event_id}: removal for a device never registered")
    key = (event.app_id, event.device_id)
    changes.devices[key] = msgspec.structs.replace(
        current, version=event.version, last_hash=event.hash, updated_at=event.occurred_at
    )
    for channel in event.channels:
        changes.subs[(*key, channel)] = None


def _forgotten(changes: Changes, event: DeviceForgotten, current: DeviceRow | None) -> None:
    """The row stays (it holds the version and hash a later registration continues from), its
    sealed token goes: nothing of the device's personal data is left in the rows."""
    _removed(changes, event, current)
    key = (event.app_id, event.device_id)
    changes.devices[key] = msgspec.structs.replace(changes.devices[key], device_token="")


def _channel_created(changes: Changes, event: ChannelCreated) -> None:
    key = (event.app_id, event.channel)
    # A channel may be announced again: a re-processed command, or another worker that had not
    # seen it on its own partitions. The earliest time stands, whatever order the partitions
    # are read in (a rebuild need not interleave them as the live projector did).
    seen = changes.channels.get(key)
    changes.channels[key] = event.occurred_at if seen is None else min(seen, event.occurred_at)


DeviceFold = Callable[[Changes, Any, DeviceRow | None], None]
DEVICE_FOLDS: dict[type, DeviceFold] = {
    DeviceRegistered: _registered,
    DeviceUnregistered: _removed,
    RegistrationExpired: _removed,
    TokenRejected: _removed,
    DeviceSuperseded: _removed,
    DeviceForgotten: _forgotten,
}
CHANNEL_FOLDS: dict[type, Callable[[Changes, Any], None]] = {ChannelCreated: _channel_created}


def _check_sequence(event: DeviceEvent, current: DeviceRow | None) -> bool:
    """True to apply, False for a duplicate; raises on a gap or a broken chain."""
    version = current.version if current else 0
    last_hash = current.last_hash if current else ""
    if event.version <= version:
        return False
    if event.version != version + 1 or event.prev_hash != last_hash:
        raise ProjectionError(
            f"event {event.event_id} of {event.app_id}/{event.device_id} has version"
            f" {event.version} prev_hash {event.prev_hash[:12]}…, projection is at version"
            f" {version} hash {last_hash[:12]}…: the log has a gap or a broken hash chain"
        )
    return True


def fold(changes: Changes, event: AnyEvent) -> None:
    """Apply one event to `changes`; duplicates (re-emitted events) are counted and skipped."""
    if isinstance(event, ChannelCreated):
        CHANNEL_FOLDS[type(event)](changes, event)
        changes.applied += 1
        return
    current = changes.device((event.app_id, event.device_id))
    if not _check_sequence(event, current):
        changes.duplicates += 1
        return
    DEVICE_FOLDS[type(event)](changes, event, current)
    changes.history.append(event)
    changes.applied += 1
