"""Property tests: any sequence of commands folds into a consistent, replayable history."""

from __future__ import annotations

from collections import Counter, defaultdict

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from events import (
    AnyCommand,
    AnyEvent,
    ChannelCreated,
    Decision,
    DeviceForgotten,
    DeviceState,
    DeviceUnregistered,
    DueExpiry,
    ExpireRegistration,
    ExpireRegistrations,
    ForgetDevice,
    RegisterDevice,
    RegistrationExpired,
    ReportRejectedToken,
    SupersedeDevice,
    UnregisterDevice,
    decide,
    decide_expiries,
    decode_event,
    empty_state,
    encode,
    evolve,
)
from events.identity import event_hash

NOW = 1_750_000_000_000
MINUTE = 60_000
APPS = ("app-a", "app-b")
DEVICES = ("d1", "d2")
CHANNELS = ("default", "news", "sports", "x")

Key = tuple[str, str]


class Step(msgspec.Struct, frozen=True):
    """One command of a generated script, before ids and the clock are filled in."""

    kind: str
    app_id: str
    device_id: str
    advance_ms: int
    channels: tuple[str, ...] | None
    expiration_offset: int | None
    os: str = "ANDROID"
    matches: bool = True  # a report's token, a supersede's claim: the device's current one


channel_list = st.lists(st.sampled_from(CHANNELS), max_size=3).map(tuple)
step_fields = {
    "app_id": st.sampled_from(APPS),
    "device_id": st.sampled_from(DEVICES),
    "advance_ms": st.integers(0, 5 * MINUTE),
}
steps = st.one_of(
    st.builds(
        Step,
        kind=st.just("register"),
        **step_fields,
        channels=channel_list,
        # Some in the past or exactly now: those are rejected with 5004 and must change nothing.
        expiration_offset=st.none() | st.integers(-MINUTE, 10 * MINUTE),
        os=st.sampled_from(("ios", "ANDROID", "Wp", "osx")),
    ),
    st.builds(
        Step,
        kind=st.just("unregister"),
        **step_fields,
        channels=st.none() | channel_list,
        expiration_offset=st.none(),
    ),
    st.builds(
        Step,
        kind=st.sampled_from(("expire", "expire-many")),
        **step_fields,
        channels=st.none(),
        expiration_offset=st.integers(-10 * MINUTE, MINUTE),
    ),
    st.builds(
        Step,
        kind=st.just("report"),
        **step_fields,
        channels=st.none(),
        # When the push was sent, before or after the device's last registration.
        expiration_offset=st.integers(-10 * MINUTE, 0),
        matches=st.booleans(),
    ),
    st.builds(
        Step,
        kind=st.just("supersede"),
        **step_fields,
        channels=st.none(),
        expiration_offset=st.none(),
        matches=st.booleans(),
    ),
    st.builds(
        Step, kind=st.just("forget"), **step_fields, channels=st.none(), expiration_offset=st.none()
    ),
)


def to_command(step: Step, index: int, now: int, state: DeviceState | None = None) -> AnyCommand:
    """The step's command; a report or a supersede names the device's current token or
    registration (from `state`) when the step says it matches."""
    command_id, app_id, device_id = f"cmd-{index}", step.app_id, step.device_id
    state = state or empty_state(app_id, device_id)
    if step.kind == "report":
        return ReportRejectedToken(
            command_id=command_id,
            app_id=app_id,
            device_id=device_id,
            issued_at=now,
            device_token=state.device_token if step.matches and state.device_token else "other",
            provider="fcm",
            reason="UNREGISTERED",
            sent_at=now + (step.expiration_offset or 0),
        )
    if step.kind == "supersede":
        claim = state.registration if step.matches and state.registration else "stale"
        return SupersedeDevice(
            command_id=command_id,
            app_id=app_id,
            device_id=device_id,
            issued_at=now,
            by_device_id="newer",
            claim=claim,
        )
    if step.kind == "forget":
        return ForgetDevice(
            command_id=command_id, app_id=app_id, device_id=device_id, issued_at=now
        )
    if step.kind == "register":
        expiration = None if step.expiration_offset is None else now + step.expiration_offset
        return RegisterDevice(
            command_id=command_id,
            app_id=app_id,
            device_id=device_id,
            issued_at=now,
            device_token=f"token-{index}",
            os=step.os,
            os_version=str(index),
            channels=step.channels or (),
            expiration=expiration,
        )
    if step.kind == "unregister":
        return UnregisterDevice(
            command_id=command_id,
            app_id=app_id,
            device_id=device_id,
            issued_at=now,
            channels=step.channels,
        )
    expiration = now + (step.expiration_offset or 0)
    if step.kind == "expire-many":
        # Every device of the app, the step's own first: what the scheduler sends is in the
        # order of its due rows.
        others = tuple(d for d in DEVICES if d != device_id)
        return ExpireRegistrations(
            command_id=command_id,
            app_id=app_id,
            issued_at=now,
            devices=tuple(
                DueExpiry(device_id=d, expiration=expiration, version=1)
                for d in (device_id, *others)
            ),
        )
    return ExpireRegistration(
        command_id=command_id,
        app_id=app_id,
        device_id=device_id,
        issued_at=now,
        expiration=expiration,
    )


def decide_in(
    states: dict[Key, DeviceState], known: set[str], command: AnyCommand, now: int
) -> Decision:
    """`command` decided against `states` (its device's, or for a command of many devices,
    each of theirs), which take its events."""
    if isinstance(command, ExpireRegistrations):
        decision = decide_expiries(states, command, now)
    else:
        key = (command.app_id, command.device_id)
        decision = decide(states.get(key) or empty_state(*key), known, command, now)
    for event in decision.events:
        if isinstance(event, ChannelCreated):
            known.add(event.channel)
        else:
            key = (event.app_id, event.device_id)
            states[key] = evolve(states.get(key) or empty_state(*key), event)
    return decision


@settings(max_examples=500, deadline=None)
@given(st.lists(steps, min_size=8, max_size=60))
def test_given_any_command_sequence_when_decided_and_evolved_then_history_is_consistent(
    script: list[Step],
) -> None:
    # Given / When: every command decided against the state built so far, in order.
    states: dict[Key, DeviceState] = {}
    known_channels: dict[str, set[str]] = defaultdict(set)
    log: list[AnyEvent] = []
    now = NOW
    for index, step in enumerate(script):
        now += step.advance_ms
        key = (step.app_id, step.device_id)
        command = to_command(step, index, now, states.get(key))

        decision = decide_in(states, known_channels[command.app_id], command, now)

        assert decision.outcome.event_ids == tuple(e.event_id for e in decision.events)
        assert decision.outcome.accepted or not decision.events
        named = {d.device_id for d in getattr(command, "devices", ())} or {command.device_id}
        for event in decision.events:
            assert event.app_id == command.app_id
            assert event.occurred_at == now
            log.append(event)
            if not isinstance(event, ChannelCreated):
                assert event.device_id in named
        state = states.get(key) or empty_state(*key)
        if isinstance(command, ExpireRegistration) and decision.outcome.accepted:
            assert state.active_channels(now) == state.channels
        if isinstance(command, ExpireRegistrations):
            # Every device named: nothing passed is left, and a stale one had nothing passed
            for device_id in named:
                left = states.get((command.app_id, device_id)) or empty_state(key[0], device_id)
                assert left.active_channels(now) == left.channels
            expired = {e.device_id for e in decision.events if isinstance(e, RegistrationExpired)}
            assert set(decision.outcome.stale) == named - expired
        if isinstance(command, UnregisterDevice) and decision.events:
            [removed] = decision.events
            assert isinstance(removed, DeviceUnregistered)
            assert not set(removed.channels) & set(state.channels)
        if decision.events and isinstance(command, ReportRejectedToken | SupersedeDevice):
            assert not state.exists  # removed, every channel of it
        if isinstance(command, ForgetDevice) and decision.events:
            [forgotten] = decision.events
            assert isinstance(forgotten, DeviceForgotten)
            assert state.device_token == ""
            assert not state.channels

    # Then: per device, versions are gapless from 1 and the hash chain is intact.
    by_device: dict[Key, list[AnyEvent]] = defaultdict(list)
    for event in log:
        if not isinstance(event, ChannelCreated):
            by_device[(event.app_id, event.device_id)].append(event)
    for events in by_device.values():
        assert [e.version for e in events] == list(range(1, len(events) + 1))
        assert [e.prev_hash for e in events] == ["", *(e.hash for e in events[:-1])]
        assert all(e.hash == event_hash(e) for e in events)

    # ChannelCreated at most once per (app, channel), each its own one-event, sealed stream;
    # and every channel a device is on was created in its app.
    created = [e for e in log if isinstance(e, ChannelCreated)]
    counts = Counter((e.app_id, e.channel) for e in created)
    assert all(count == 1 for count in counts.values())
    assert all(e.version == 1 and e.prev_hash == "" and e.hash == event_hash(e) for e in created)
    for (app_id, _), state in states.items():
        assert set(state.channels) <= known_channels[app_id]

    # Event ids are unique across the whole log.
    assert len({e.event_id for e in log}) == len(log)

    # Replaying the log from the wire, from empty state, rebuilds the live states; replaying it
    # twice (at-least-once delivery) changes nothing.
    wire = [decode_event(encode(e)) for e in log]
    for rounds in (1, 2):
        rebuilt: dict[Key, DeviceState] = {}
        for event in wire * rounds:
            if isinstance(event, ChannelCreated):
                continue
            key = (event.app_id, event.device_id)
            rebuilt[key] = evolve(rebuilt.get(key) or empty_state(*key), event)
        for key, state in states.items():
            assert rebuilt.get(key, empty_state(*key)) == state
