"""The token lifecycle's rules (docs/design.md §12): a provider's rejection of a token, a
token registered by another device (supersede), and a device's erasure (forget)."""

from __future__ import annotations

from events import identity
from events.decision import Decision, accept, reject, unknown_device
from events.model import (
    DeviceForgotten,
    DeviceSuperseded,
    ForgetDevice,
    ReportRejectedToken,
    SupersedeDevice,
    TokenRejected,
)
from events.state import DeviceState


def _all_channels(state: DeviceState) -> tuple[str, ...]:
    # Sorted, so the event never depends on the order a store kept the channels in.
    return tuple(sorted(state.channels))


def report(state: DeviceState, command: ReportRejectedToken, now_ms: int) -> Decision:
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
        return accept(command, now_ms, (), note=f"ignored: {ignored}")
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
    return accept(command, now_ms, (identity.seal(event),))


def supersede(state: DeviceState, command: SupersedeDevice, now_ms: int) -> Decision:
    if not state.exists or state.registration != command.claim:
        note = "ignored: the device registered again, or was removed, since that registration"
        return accept(command, now_ms, (), note=note)
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
    return accept(command, now_ms, (identity.seal(event),))


def forget(state: DeviceState, command: ForgetDevice, now_ms: int) -> Decision:
    if state.version == 0:
        return reject(command, now_ms, unknown_device(command))
    if not state.device_token and not state.channels and state.forgotten_at is not None:
        return accept(command, now_ms, (), note="ignored: the device is forgotten already")
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
    return accept(command, now_ms, (identity.seal(event),))
