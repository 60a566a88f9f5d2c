"""Builders and a tiny in-memory registry for the domain tests (no mocks: the domain is pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from events import (
    AnyCommand,
    AnyEvent,
    ChannelCreated,
    Decision,
    DeviceRegistered,
    DeviceState,
    DeviceUnregistered,
    ExpireRegistration,
    RegisterDevice,
    RegistrationExpired,
    UnregisterDevice,
    decide,
    empty_state,
    evolve,
)

APP = "app-1"
DEVICE = "device-1"

NOW = 1_750_000_000_000
HOUR = 3_600_000
DAY = 24 * HOUR


def register(
    command_id: str = "reg-1",
    *,
    app_id: str = APP,
    device_id: str = DEVICE,
    device_token: str = "token-1",
    os: str = "ANDROID",
    os_version: str = "14",
    channels: tuple[str, ...] = (),
    expiration: int | None = None,
    user_token: str | None = None,
) -> RegisterDevice:
    return RegisterDevice(
        command_id=command_id,
        app_id=app_id,
        device_id=device_id,
        device_token=device_token,
        os=os,
        os_version=os_version,
        channels=channels,
        expiration=expiration,
        user_token=user_token,
    )


def unregister(
    command_id: str = "unreg-1", *, device_id: str = DEVICE, channels: tuple[str, ...] | None = None
) -> UnregisterDevice:
    return UnregisterDevice(
        command_id=command_id, app_id=APP, device_id=device_id, channels=channels
    )


def expire(command_id: str = "exp-1", *, expiration: int = NOW) -> ExpireRegistration:
    return ExpireRegistration(
        command_id=command_id, app_id=APP, device_id=DEVICE, expiration=expiration
    )


@dataclass
class Registry:
    """A hand-written stand-in for the command processor: one app, state kept in memory."""

    states: dict[str, DeviceState] = field(default_factory=dict)
    known_channels: set[str] = field(default_factory=set)

    def state(self, device_id: str = DEVICE) -> DeviceState:
        return self.states.get(device_id) or empty_state(APP, device_id)

    def run(self, command: AnyCommand, now_ms: int = NOW) -> Decision:
        decision = decide(self.state(command.device_id), self.known_channels, command, now_ms)
        state = self.state(command.device_id)
        for event in decision.events:
            if isinstance(event, ChannelCreated):
                self.known_channels.add(event.channel)
            else:
                state = evolve(state, event)
        self.states[command.device_id] = state
        return decision

    def accepted(self, command: AnyCommand, now_ms: int = NOW) -> tuple[AnyEvent, ...]:
        decision = self.run(command, now_ms)
        assert decision.outcome.accepted, decision.outcome
        return decision.events


E = TypeVar("E", DeviceRegistered, ChannelCreated, DeviceUnregistered, RegistrationExpired)


def only(events: tuple[AnyEvent, ...], cls: type[E]) -> list[E]:
    return [event for event in events if isinstance(event, cls)]


def device_registered(events: tuple[AnyEvent, ...]) -> DeviceRegistered:
    [registered] = [event for event in events if isinstance(event, DeviceRegistered)]
    return registered


def assert_rejected(decision: Decision, code: int) -> str:
    assert decision.events == ()
    assert not decision.outcome.accepted
    assert decision.outcome.code == code
    assert decision.outcome.event_ids == ()
    assert decision.outcome.decided_at == NOW
    assert decision.outcome.message
    return decision.outcome.message
