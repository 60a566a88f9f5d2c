"""decide() and evolve(): versions, the hash chain, deterministic ids."""

from __future__ import annotations

import msgspec
import pytest

from events import (
    AnyCommand,
    AnyEvent,
    ChannelCreated,
    DeviceRegistered,
    DeviceState,
    decide,
    empty_state,
    encode,
    evolve,
    identity,
    rules,
)
from tests.unit.domain import (
    APP,
    DAY,
    DEVICE,
    HOUR,
    NOW,
    Registry,
    device_registered,
    expire,
    register,
    unregister,
)

# --- Versions, hash chain, ids ---------------------------------------------------------------


def test_given_a_device_history_then_versions_are_gapless_and_hashes_chain() -> None:
    registry = Registry()
    device_events: list[AnyEvent] = []
    history: list[tuple[AnyCommand, int]] = [
        (register("reg-1", channels=("a", "b"), expiration=NOW + HOUR), NOW),
        (unregister("unreg-1", channels=("a",)), NOW + 1),
        (register("reg-2", channels=("c",), expiration=NOW + 2 * HOUR), NOW + 2),
        (expire("exp-1", expiration=NOW + 2 * HOUR), NOW + 2 * HOUR),
    ]
    for command, now in history:
        events = registry.accepted(command, now)
        device_events += [e for e in events if not isinstance(e, ChannelCreated)]

    assert [e.version for e in device_events] == [1, 2, 3, 4, 5]
    assert [e.prev_hash for e in device_events] == ["", *(e.hash for e in device_events[:-1])]
    assert all(e.hash == identity.event_hash(e) for e in device_events)
    assert registry.state().version == 5
    assert registry.state().last_hash == device_events[-1].hash


def test_given_an_unregistered_device_when_registering_again_then_versions_go_on() -> None:
    # Given
    registry = Registry()
    registry.accepted(register("reg-1"))
    [gone] = registry.accepted(unregister("unreg-1"), NOW + 1)
    assert not registry.state().exists

    # When
    events = registry.accepted(register("reg-2"), NOW + 2)

    # Then
    registered = device_registered(events)
    assert registered.version == 3
    assert registered.prev_hash == gone.hash
    assert registry.state().version == 3


def test_given_a_command_then_event_ids_derive_from_app_command_and_index() -> None:
    decision = Registry(known_channels={"a"}).run(register("reg-9", channels=("a", "b", "c")))

    # the device's event is index 0; a channel's announcement is 1 + its place in the command
    assert [e.event_id for e in decision.events] == [
        identity.event_id(APP, "reg-9", 2),
        identity.event_id(APP, "reg-9", 3),
        identity.event_id(APP, "reg-9", 0),
    ]
    assert decision.outcome.event_ids == tuple(e.event_id for e in decision.events)


def test_given_other_known_channels_when_deciding_again_then_the_same_events_are_emitted() -> None:
    # Given a device's state, and a command deciding it further. Known channels are the
    # deciding worker's own, not the device's: when a partition moves, the new owner
    # re-decides its commands knowing the channels its other partitions named
    _, state = _history()
    command = register("reg-3", channels=("b", "new"), expiration=NOW + DAY)

    # When one worker knows no channel and another knows "b"
    unaware = decide(state, set(), command, NOW + 5)
    aware = decide(state, {"a", "b", "c"}, command, NOW + 5)

    # Then the device's event is byte-identical: its chain does not depend on the worker
    assert encode(device_registered(unaware.events)) == encode(device_registered(aware.events))
    # And a channel both announce is announced by the same event
    [announced] = [e for e in aware.events if isinstance(e, ChannelCreated)]
    assert announced.channel == "new"
    assert encode(announced) in {encode(e) for e in unaware.events}


def test_given_the_same_command_id_in_two_apps_then_event_ids_differ() -> None:
    registry_1, registry_2 = Registry(), Registry()

    events_1 = registry_1.accepted(register("same-id", app_id="app-1", channels=("a",)))
    events_2 = registry_2.run(register("same-id", app_id="app-2", channels=("a",))).events

    assert len(events_1) == len(events_2) == 2
    assert not {e.event_id for e in events_1} & {e.event_id for e in events_2}


def _history() -> tuple[Registry, DeviceState]:
    registry = Registry()
    registry.accepted(register("reg-1", channels=("a", "b"), expiration=NOW + HOUR))
    registry.accepted(register("reg-2", channels=("c",), expiration=NOW + 2 * HOUR), NOW + 1)
    return registry, registry.state()


@pytest.mark.parametrize(
    ("command", "now"),
    [
        (register("reg-3", channels=("b", "new"), expiration=NOW + DAY), NOW + 5),
        (unregister("unreg-1", channels=("a", "c")), NOW + 5),
        (unregister("unreg-1"), NOW + 5),
        (expire("exp-1", expiration=NOW + 2 * HOUR), NOW + 2 * HOUR),
        (register("reg-bad", os="symbian"), NOW + 5),
    ],
    ids=["register", "unregister-channels", "unregister-all", "expire", "rejected"],
)
def test_given_the_same_inputs_when_deciding_twice_then_results_are_byte_identical(
    command: AnyCommand, now: int
) -> None:
    registry, state = _history()
    known = frozenset(registry.known_channels)

    first = decide(state, known, command, now)
    second = decide(state, set(known), command, now)

    assert [encode(e) for e in first.events] == [encode(e) for e in second.events]
    assert encode(first.outcome) == encode(second.outcome)
    assert first.outcome.event_ids == second.outcome.event_ids


# --- evolve ----------------------------------------------------------------------------------


def test_given_events_already_applied_when_evolving_again_then_state_is_unchanged() -> None:
    # Given
    registry = Registry()
    events = registry.accepted(register("reg-1", channels=("a", "b")))
    events += registry.accepted(unregister("unreg-1", channels=("a",)), NOW + 1)
    device_events = [e for e in events if not isinstance(e, ChannelCreated)]
    state = registry.state()

    # When: the whole history is delivered again (at-least-once delivery).
    replayed = state
    for event in device_events:
        replayed = evolve(replayed, event)

    # Then
    assert replayed == state
    assert set(replayed.channels) == {"b"}


def test_given_an_event_at_or_below_the_state_version_when_evolving_then_it_is_skipped() -> None:
    state = DeviceState(app_id=APP, device_id=DEVICE, version=3, last_hash="h3")
    stale = DeviceRegistered(
        event_id="e",
        app_id=APP,
        version=3,
        occurred_at=NOW,
        command_id="c",
        prev_hash="h2",
        hash="h3-other",
        device_id=DEVICE,
        device_token="t",
        os="IOS",
        os_version="1",
        channels=("a",),
        registration_ids={"a": "R"},
    )

    assert evolve(state, stale) is state
    assert evolve(state, msgspec.structs.replace(stale, version=1)) is state


def test_given_a_device_log_when_replayed_from_empty_state_then_it_equals_the_live_state() -> None:
    # Given: a live registry and the device events it decided.
    registry = Registry()
    log: list[AnyEvent] = []
    history: list[tuple[AnyCommand, int]] = [
        (register("reg-1", channels=("a", "b"), expiration=NOW + HOUR), NOW),
        (register("reg-2", os="ios", channels=("c",), expiration=NOW + 2 * HOUR), NOW + 1),
        (unregister("unreg-1", channels=("c",)), NOW + 2),
        (expire("exp-1", expiration=NOW + HOUR), NOW + HOUR),
        (register("reg-3", device_token="t2", channels=("d",)), NOW + HOUR + 1),
    ]
    for command, now in history:
        log += registry.accepted(command, now)

    # When
    rebuilt = empty_state(APP, DEVICE)
    for event in log:
        if not isinstance(event, ChannelCreated):
            rebuilt = evolve(rebuilt, event)

    # Then
    assert rebuilt == registry.state()
    assert set(rebuilt.channels) == {"d"}


# --- expiration_to_ms ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (1_750_000_000, 1_750_000_000_000),  # seconds
        (1_750_000_000.5, 1_750_000_000_500),  # fractional seconds (JS SDK Date)
        (1_750_000_000.1234, 1_750_000_000_123),  # rounded to ms
        (1_750_000_000.1236, 1_750_000_000_124),
        (1_750_000_000_000, 1_750_000_000_000),  # ms
        (1_750_000_000_000.7, 1_750_000_000_001),  # fractional ms rounded
        (10**11, 10**11),  # the cutoff itself is ms
        (10**11 - 1, (10**11 - 1) * 1000),  # just below it: seconds
        (0, 0),
    ],
)
def test_given_a_backendless_expiration_when_converted_then_ms_since_epoch(
    value: float | None, expected: int | None
) -> None:
    result = rules.expiration_to_ms(value)

    assert result == expected
    assert result is None or type(result) is int
