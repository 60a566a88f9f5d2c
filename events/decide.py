"""`decide`: the pure rule that turns a command and the current state into events.

Time comes from the caller (the command's own `issued_at`), ids from the command id, so the
same command against the same state always yields byte-identical events.
"""

from __future__ import annotations

from collections.abc import Container

import msgspec

from events import identity, rules, sealed
from events.model import (
    AnyCommand,
    AnyEvent,
    ChannelCreated,
    DeviceForgotten,
    DeviceRegistered,
    DeviceSuperseded,
    DeviceUnregistered,
    ExpireRegistration,
    ForgetDevice,
    Outcome,
    RegisterDevice,
    RegistrationExpired,
    ReportRejectedToken,
    SupersedeDevice,
    TokenRejected,
    UnregisterDevice,
)
from events.state import DeviceState


class Decision(msgspec.Struct, frozen=True):
    events: tuple[AnyEvent, ...]
    outcome: Outcome


def _reject(command: AnyCommand, now_ms: int, rejection: rules.Rejection) -> Decision:
    outcome = Outcome(
        command_id=command.command_id,
        app_id=command.app_id,
        device_id=command.device_id,
        accepted=False,
        decided_at=now_ms,
        code=rejection.code,
        message=rejection.message,
    )
    return Decision((), outcome)


def _accept(
    command: AnyCommand,
    now_ms: int,
    events: tuple[AnyEvent, ...],
    registration_ids: dict[str, str] | None = None,
    note: str | None = None,
) -> Decision:
    outcome = Outcome(
        command_id=command.command_id,
        app_id=command.app_id,
        device_id=command.device_id,
        accepted=True,
        decided_at=now_ms,
        event_ids=tuple(event.event_id for event in events),
        registration_ids=registration_ids or {},
        note=note,
    )
    return Decision(events, outcome)


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
        return _reject(command, now_ms, rules.Rejection(rules.INVALID_REGISTRATION, message))
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
    return _accept(command, now_ms, tuple(events), registration_ids)


def _unknown_device(command: AnyCommand, detail: str = "") -> rules.Rejection:
    return rules.Rejection(
        rules.UNKNOWN_DEVICE_DELETE,
        f"Unable to cancel device registration - unknown device ID {command.device_id!r}{detail}",
    )


def _unregister(state: DeviceState, command: UnregisterDevice, now_ms: int) -> Decision:
    # A channel whose expiration has passed is already gone for clients (GET never shows it);
    # it leaves the state through its own RegistrationExpired, not through this command.
    active = state.active_channels(now_ms)
    if not active:
        return _reject(command, now_ms, _unknown_device(command))
    if command.channels is None:
        # Sorted, so the event never depends on the order a store kept the channels in.
        removed = tuple(sorted(active))
    else:
        removed = tuple(c for c in _dedupe(command.channels) if c in active)
        if not removed:
            named = ",".join(command.channels)
            return _reject(command, now_ms, _unknown_device(command, f" on channels {named}"))
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
    return _accept(command, now_ms, (identity.seal(event),))


def _expire(state: DeviceState, command: ExpireRegistration, now_ms: int) -> Decision:
    by_expiration: dict[int, list[str]] = {}
    for name, sub in state.channels.items():
        if sub.expiration is not None and sub.expiration <= now_ms:
            by_expiration.setdefault(sub.expiration, []).append(name)
    if not by_expiration:
        note = f"stale: no channel of the device had expired at {now_ms}"
        return _accept(command, now_ms, (), note=note)
    events: list[AnyEvent] = []
    version, prev_hash = state.version, state.last_hash
    for expiration in sorted(by_expiration):
        version += 1
        expired = RegistrationExpired(
            event_id=identity.event_id(command.app_id, command.command_id, len(events)),
            app_id=command.app_id,
            version=version,
            occurred_at=now_ms,
            command_id=command.command_id,
            prev_hash=prev_hash,
            device_id=command.device_id,
            channels=tuple(sorted(by_expiration[expiration])),
            expiration=expiration,
        )
        sealed = identity.seal(expired)
        events.append(sealed)
        prev_hash = sealed.hash
    return _accept(command, now_ms, tuple(events))


def _all_channels(state: DeviceState) -> tuple[str, ...]:
    # Sorted, so the event never depends on the order a store kept the channels in.
    return tuple(sorted(state.channels))


def _report(state: DeviceState, command: ReportRejectedToken, now_ms: int) -> Decision:
    """Remove the device for a provider's rejection, only if the report is about the token it
    holds now, from a push sent after its last registration (parse-server wiped valid tokens
    on stale reports: #4500, #6052). Tokens compare by sealed text: same key, same text."""
    ignored = None
    if not state.exists:
        ignored = "the device is not registered"
    elif state.device_token != command.device_token:
        ignored = "the device no longer holds this token"
    elif state.registered_at > command.sent_at:
        ignored = (
            f"the device registered again at {state.registered_at}, after the push was sent"
            f" at {command.sent_at}"
        )
    if ignored is not None:
        return _accept(command, now_ms, (), note=f"ignored: {ignored}")
    event = TokenRejected(
        event_id=identity.event_id(command.app_id, command.command_id, 0),
        app_id=command.app_id,
        version=state.version + 1,
        occurred_at=now_ms,
        command_id=command.command_id,
        prev_hash=state.last_hash,
        device_id=command.device_id,
        channels=_all_channels(state),
        provider=command.provider,
        reason=command.reason,
        sent_at=command.sent_at,
    )
    return _accept(command, now_ms, (identity.seal(event),))


def _supersede(state: DeviceState, command: SupersedeDevice, now_ms: int) -> Decision:
    if not state.exists or state.registration != command.claim:
        note = "ignored: the device registered again, or was removed, since that registration"
        return _accept(command, now_ms, (), note=note)
    event = DeviceSuperseded(
        event_id=identity.event_id(command.app_id, command.command_id, 0),
        app_id=command.app_id,
        version=state.version + 1,
        occurred_at=now_ms,
        command_id=command.command_id,
        prev_hash=state.last_hash,
        device_id=command.device_id,
        channels=_all_channels(state),
        by_device_id=command.by_device_id,
    )
    return _accept(command, now_ms, (identity.seal(event),))


def _forget(state: DeviceState, command: ForgetDevice, now_ms: int) -> Decision:
    if state.version == 0:
        return _reject(command, now_ms, _unknown_device(command))
    if not state.device_token and not state.channels and state.forgotten_at is not None:
        return _accept(command, now_ms, (), note="ignored: the device is forgotten already")
    event = DeviceForgotten(
        event_id=identity.event_id(command.app_id, command.command_id, 0),
        app_id=command.app_id,
        version=state.version + 1,
        occurred_at=now_ms,
        command_id=command.command_id,
        prev_hash=state.last_hash,
        device_id=command.device_id,
        channels=_all_channels(state),
        reason=command.reason,
    )
    return _accept(command, now_ms, (identity.seal(event),))


def decide(
    state: DeviceState, known_channels: Container[str], command: AnyCommand, now_ms: int
) -> Decision:
    """Validate `command` and decide its events against `state` at `now_ms`."""
    rejection = rules.check(command, now_ms)
    if rejection:
        return _reject(command, now_ms, rejection)
    match command:
        case RegisterDevice():
            return _register(state, known_channels, command, now_ms)
        case UnregisterDevice():
            return _unregister(state, command, now_ms)
        case ExpireRegistration():
            return _expire(state, command, now_ms)
        case ReportRejectedToken():
            return _report(state, command, now_ms)
        case SupersedeDevice():
            return _supersede(state, command, now_ms)
        case ForgetDevice():
            return _forget(state, command, now_ms)
