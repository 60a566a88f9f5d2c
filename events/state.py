"""Device state and `evolve`: the one fold of events into state used everywhere."""

from __future__ import annotations

import msgspec

from events.model import (
    DeviceEvent,
    DeviceForgotten,
    DeviceRegistered,
    DeviceSuperseded,
    DeviceUnregistered,
    RegistrationExpired,
    TokenRejected,
)


class Subscription(msgspec.Struct, frozen=True):
    registration_id: str
    expiration: int | None = None

    def active_at(self, now_ms: int) -> bool:
        return self.expiration is None or self.expiration > now_ms


class DeviceState(msgspec.Struct, frozen=True, kw_only=True):
    """What the command processor knows of one device.

    `version` and `last_hash` outlive unregistration, so a device that comes back continues
    its gapless sequence and hash chain. A device exists while it has a channel.
    `device_token` is the sealed text (events/sealed.py), never the token itself.
    """

    app_id: str
    device_id: str
    version: int = 0
    last_hash: str = ""
    device_token: str = ""
    os: str = ""
    os_version: str = ""
    channels: dict[str, Subscription] = {}
    # When the device last registered, and that registration's event id: a token report about
    # a push sent before, or a supersede naming an older registration, is stale.
    registered_at: int = 0
    registration: str = ""
    # When the device was last forgotten: a value sealed with a key created before then was
    # sealed with an erased key (a registration in flight during the erasure).
    forgotten_at: int | None = None
    # When the last event happened: for a device without channels, since when it is gone
    # (retention erases it that long after).
    changed_at: int = 0

    @property
    def exists(self) -> bool:
        return bool(self.channels)

    def active_channels(self, now_ms: int) -> dict[str, Subscription]:
        return {name: sub for name, sub in self.channels.items() if sub.active_at(now_ms)}


def empty_state(app_id: str, device_id: str) -> DeviceState:
    return DeviceState(app_id=app_id, device_id=device_id)


def _without(
    channels: dict[str, Subscription], removed: tuple[str, ...]
) -> dict[str, Subscription]:
    return {name: sub for name, sub in channels.items() if name not in removed}


def evolve(state: DeviceState, event: DeviceEvent) -> DeviceState:
    """Apply one device event. Events at or below the state's version are duplicates: skipped."""
    if event.version <= state.version:
        return state
    match event:
        case DeviceRegistered():
            channels = dict(state.channels)
            for name in event.channels:
                channels[name] = Subscription(event.registration_ids[name], event.expiration)
            return msgspec.structs.replace(
                state,
                version=event.version,
                last_hash=event.hash,
                device_token=event.device_token,
                os=event.os,
                os_version=event.os_version,
                channels=channels,
                registered_at=event.occurred_at,
                registration=event.event_id,
                changed_at=event.occurred_at,
            )
        case DeviceForgotten():
            return msgspec.structs.replace(
                state,
                version=event.version,
                last_hash=event.hash,
                device_token="",
                channels=_without(state.channels, event.channels),
                forgotten_at=event.occurred_at,
                changed_at=event.occurred_at,
            )
        case DeviceUnregistered() | RegistrationExpired() | TokenRejected() | DeviceSuperseded():
            return msgspec.structs.replace(
                state,
                version=event.version,
                last_hash=event.hash,
                channels=_without(state.channels, event.channels),
                changed_at=event.occurred_at,
            )
