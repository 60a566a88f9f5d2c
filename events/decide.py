"""`decide`: the pure rule that turns a command and the current state into events.

Time comes from the caller (the command's own `issued_at`), ids from the command id, so the
same command against the same state always yields byte-identical events.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping

from events import identity, lifecycle, rules, sealed
from events.decision import Decision, accept, reject, unknown_device
from events.model import (
    AnyCommand,
    AnyEvent,
    ChannelCreated,
    DeviceRegistered,
    DeviceUnregistered,
    ExpireRegistration,
    ExpireRegistrations,
    ForgetDevice,
    RegisterDevice,
    RegistrationExpired,
    ReportRejectedToken,
    SupersedeDevice,
    UnregisterDevice,
)
from events.state import DeviceState, empty_state


def _dedupe(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def _sealed_before_erasure(state: DeviceState, *values: str | None) -> bool:
    """A value sealed with a key created before the device was last forgotten: that key is
    erased, so the value could never be read (a registration in flight during the erasure)."""
    if state.forgotten_at is None:
        return False
    for value in values:
        kid = sealed.key_id(value or "")
        created = sealed.key_created_at(kid) if kid else None
        if created is not None and created <= state.forgotten_at:
            return True
    return False


def _register(
    state: DeviceState, known_channels: Container[str], command: RegisterDevice, now_ms: int
) -> Decision:
    app_id, device_id = command.app_id, command.device_id
    if _sealed_before_erasure(state, command.device_token, command.user_token):
        message = (
            f"Device {device_id!r} was forgotten while this registration was on its way:"
            " register it again"
        )
        return reject(command, now_ms, rules.Rejection(rules.INVALID_REGISTRATION, message))
    channels = _dedupe(command.channels) or (rules.DEFAULT_CHANNEL,)
    events: list[AnyEvent] = []
    # Ids come from fixed slots: the device's event is 0, channel i's announcement 1 + i.
    # Which channels are announced depends on what the deciding worker has seen on its other
    # partitions, so it must not shift the device's event id (and with it its hash): a worker
    # that takes a partition over re-decides its commands, and must re-emit the same chain.
    for slot, channel in enumerate(channels, start=1):
        if channel not in known_channels:
            created = ChannelCreated(
                event_id=identity.event_id(app_id, command.command_id, slot),
                app_id=app_id,
                version=1,
                occurred_at=now_ms,
                command_id=command.command_id,
                prev_hash="",
                channel=channel,
            )
            events.append(identity.seal(created))
    registration_ids = {c: identity.registration_id(app_id, device_id, c) for c in channels}
    registered = DeviceRegistered(
        event_id=identity.event_id(app_id, command.command_id, 0),
        app_id=app_id,
        version=state.version + 1,
        occurred_at=now_ms,
        command_id=command.command_id,
        prev_hash=state.last_hash,
        device_id=device_id,
        device_token=command.device_token,
        os=command.os.upper(),
        os_version=command.os_version,
        channels=channels,
        registration_ids=registration_ids,
        expiration=command.expiration,
        user_token_fingerprint=command.user_token_fingerprint,
    )
    events.append(identity.seal(registered))
    return accept(command, now_ms, tuple(events), registration_ids)


def _unregister(state: DeviceState, command: UnregisterDevice, now_ms: int) -> Decision:
    # A channel whose expiration has passed is already gone for clients (GET never shows it);
    # it leaves the state through its own RegistrationExpired, not through this command.
    active = state.active_channels(now_ms)
    if not active:
        return reject(command, now_ms, unknown_device(command))
    if command.channels is None:
        # Sorted, so the event never depends on the order a store kept the channels in.
        removed = tuple(sorted(active))
    else:
        removed = tuple(c for c in _dedupe(command.channels) if c in active)
        if not removed:
            named = ",".join(command.channels)
            return reject(command, now_ms, unknown_device(command, f" on channels {named}"))
    event = DeviceUnregistered(
        event_id=identity.event_id(command.app_id, command.command_id, 0),
        app_id=command.app_id,
        version=state.version + 1,
        occurred_at=now_ms,
        command_id=command.command_id,
        prev_hash=state.last_hash,
        device_id=command.device_id,
        channels=removed,
        user_token_fingerprint=command.user_token_fingerprint,
    )
    return accept(command, now_ms, (identity.seal(event),))


# A RegistrationExpired's id from (its index in the decision, its expiration, its version).
ExpiryId = Callable[[int, int, int], str]


def _expired(
    state: DeviceState, command_id: str, now_ms: int, event_id: ExpiryId
) -> list[RegistrationExpired]:
    """One RegistrationExpired per distinct passed expiration of the device's channels, in
    expiration order, chained on the state; none when nothing has expired (a stale expiry)."""
    by_expiration: dict[int, list[str]] = {}
    for name, sub in state.channels.items():
        if sub.expiration is not None and sub.expiration <= now_ms:
            by_expiration.setdefault(sub.expiration, []).append(name)
    events: list[RegistrationExpired] = []
    version, prev_hash = state.version, state.last_hash
    for expiration in sorted(by_expiration):
        version += 1
        expired = RegistrationExpired(
            event_id=event_id(len(events), expiration, version),
            app_id=state.app_id,
            version=version,
            occurred_at=now_ms,
            command_id=command_id,
            prev_hash=prev_hash,
            device_id=state.device_id,
            channels=tuple(sorted(by_expiration[expiration])),
            expiration=expiration,
        )
        hashed = identity.seal(expired)
        events.append(hashed)
        prev_hash = hashed.hash
    return events


def _expire(state: DeviceState, command: ExpireRegistration, now_ms: int) -> Decision:
    app_id, command_id = command.app_id, command.command_id

    def event_id(index: int, expiration: int, version: int) -> str:
        return identity.event_id(app_id, command_id, index)

    events = _expired(state, command_id, now_ms, event_id)
    if not events:
        note = f"stale: no channel of the device had expired at {now_ms}"
        return accept(command, now_ms, (), note=note)
    return accept(command, now_ms, tuple(events))


def decide_expiries(
    states: Mapping[tuple[str, str], DeviceState], command: ExpireRegistrations, now_ms: int
) -> Decision:
    """Each device of `command` decided on its own, as `ExpireRegistration` decides one, against
    `states` (a device missing there has no state yet). The ids come from each device's expiry
    (identity.expiry_event_id), so they do not depend on the other devices of the command."""
    rejection = rules.check(command, now_ms)
    if rejection:
        return reject(command, now_ms, rejection)
    app_id, command_id = command.app_id, command.command_id
    events: list[AnyEvent] = []
    stale: list[str] = []
    for due in command.devices:
        device_id = due.device_id

        def event_id(index: int, expiration: int, version: int, device_id: str = device_id) -> str:
            return identity.expiry_event_id(app_id, device_id, expiration, version)

        state = states.get((app_id, device_id)) or empty_state(app_id, device_id)
        expired = _expired(state, command_id, now_ms, event_id)
        if expired:
            events.extend(expired)
        else:
            stale.append(device_id)
    note = f"{len(command.devices) - len(stale)} expired, {len(stale)} stale at {now_ms}"
    return accept(command, now_ms, tuple(events), note=note, stale=tuple(stale))


def decide(
    state: DeviceState, known_channels: Container[str], command: AnyCommand, now_ms: int
) -> Decision:
    """Validate `command` and decide its events against `state` at `now_ms`. A command of
    many devices (`ExpireRegistrations`) needs each device's state: `decide_expiries`."""
    rejection = rules.check(command, now_ms)
    if rejection:
        return reject(command, now_ms, rejection)
    match command:
        case RegisterDevice():
            return _register(state, known_channels, command, now_ms)
        case UnregisterDevice():
            return _unregister(state, command, now_ms)
        case ExpireRegistration():
            return _expire(state, command, now_ms)
        case ExpireRegistrations():
            raise TypeError("a command of many devices is decided by decide_expiries")
        case ReportRejectedToken():
            return lifecycle.report(state, command, now_ms)
        case SupersedeDevice():
            return lifecycle.supersede(state, command, now_ms)
        case ForgetDevice():
            return lifecycle.forget(state, command, now_ms)
