"""decide() and evolve(): the pure rules of the device registry, one behaviour per test."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import msgspec
import pytest

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
    Subscription,
    UnregisterDevice,
    decide,
    empty_state,
    encode,
    evolve,
    identity,
    rules,
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


# --- RegisterDevice -------------------------------------------------------------------------


def test_given_no_channels_when_registering_then_default_is_used_and_created() -> None:
    registry = Registry()

    events = registry.accepted(register(channels=()))

    created = only(events, ChannelCreated)
    assert [(e.app_id, e.channel) for e in created] == [(APP, "default")]
    registered = device_registered(events)
    assert registered.channels == ("default",)
    assert set(registry.state().channels) == {"default"}


def test_given_new_channels_when_registering_then_channel_events_come_first() -> None:
    events = Registry().accepted(register(channels=("news", "sports")))

    assert [type(e) for e in events] == [ChannelCreated, ChannelCreated, DeviceRegistered]
    for created in only(events, ChannelCreated):
        assert isinstance(created, ChannelCreated)
        assert created.version == 1
        assert created.prev_hash == ""
        assert created.occurred_at == NOW
        assert created.command_id == "reg-1"
        assert created.hash == identity.event_hash(created)


def test_given_known_channels_when_registering_then_no_channel_is_created() -> None:
    registry = Registry(known_channels={"news", "sports"})

    events = registry.accepted(register(channels=("news", "sports")))

    assert only(events, ChannelCreated) == []
    assert device_registered(events).channels == ("news", "sports")


def test_given_some_known_channels_when_registering_then_only_unknown_ones_are_created() -> None:
    registry = Registry(known_channels={"news"})

    events = registry.accepted(register(channels=("news", "sports")))

    assert [e.channel for e in only(events, ChannelCreated)] == ["sports"]


def test_given_a_channel_named_twice_when_registering_then_it_counts_once() -> None:
    events = Registry().accepted(register(channels=("news", "news")))

    assert len(only(events, ChannelCreated)) == 1
    registered = device_registered(events)
    assert registered.channels == ("news",)
    assert list(registered.registration_ids) == ["news"]


def test_given_a_channel_of_another_device_when_registering_then_not_created() -> None:
    registry = Registry()
    registry.accepted(register("reg-a", device_id="device-a", channels=("news",)))

    events = registry.accepted(register("reg-b", device_id="device-b", channels=("news",)))

    assert only(events, ChannelCreated) == []


@pytest.mark.parametrize(
    ("given", "expected"),
    [("ios", "IOS"), ("Android", "ANDROID"), ("wp", "WP"), ("oSx", "OSX"), ("IOS", "IOS")],
)
def test_given_os_in_any_case_when_registering_then_it_is_stored_upper_case(
    given: str, expected: str
) -> None:
    registry = Registry()

    events = registry.accepted(register(os=given))

    assert device_registered(events).os == expected
    assert registry.state().os == expected


@pytest.mark.parametrize("os", ["", "windows", "BLACKBERRY", " ios", "IOS10"])
def test_given_an_invalid_os_when_registering_then_rejected_5002_naming_os(os: str) -> None:
    decision = Registry().run(register(os=os))

    message = assert_rejected(decision, rules.INVALID_REGISTRATION)
    assert "'os'" in message


@pytest.mark.parametrize(
    ("field_name", "property_name"),
    [
        ("device_token", "deviceToken"),
        ("device_id", "deviceId"),
        ("os_version", "osVersion"),
        ("channels", "channels"),
    ],
)
def test_given_a_value_over_500_chars_when_registering_then_rejected_8000_naming_the_property(
    field_name: str, property_name: str
) -> None:
    too_long = "x" * (rules.MAX_FIELD_LENGTH + 1)
    value: object = (too_long,) if field_name == "channels" else too_long
    command = msgspec.structs.replace(register(), **{field_name: value})

    decision = Registry().run(command)

    message = assert_rejected(decision, rules.LENGTH_EXCEEDED)
    assert f"'{property_name}'" in message


@pytest.mark.parametrize("field_name", ["device_token", "device_id", "os_version", "channels"])
def test_given_a_value_of_exactly_500_chars_when_registering_then_accepted(field_name: str) -> None:
    at_limit = "x" * rules.MAX_FIELD_LENGTH
    value: object = (at_limit,) if field_name == "channels" else at_limit
    command = msgspec.structs.replace(register(), **{field_name: value})

    assert Registry().run(command).outcome.accepted


def test_given_a_long_channel_after_valid_ones_when_registering_then_8000() -> None:
    decision = Registry().run(register(channels=("news", "y" * 501)))

    assert "'channels'" in assert_rejected(decision, rules.LENGTH_EXCEEDED)


@pytest.mark.parametrize("channels", [("",), ("news", ""), ("a/b",), ("/",), ("news", "x/")])
def test_given_an_empty_or_slashed_channel_when_registering_then_rejected_5002(
    channels: tuple[str, ...],
) -> None:
    decision = Registry().run(register(channels=channels))

    assert_rejected(decision, rules.INVALID_REGISTRATION)


def test_given_too_many_channels_when_registering_then_rejected_5002() -> None:
    channels = tuple(f"c{i}" for i in range(rules.MAX_CHANNELS + 1))

    decision = Registry().run(register(channels=channels))

    assert "'channels'" in assert_rejected(decision, rules.INVALID_REGISTRATION)


def test_given_exactly_max_channels_when_registering_then_accepted() -> None:
    channels = tuple(f"c{i}" for i in range(rules.MAX_CHANNELS))

    events = Registry().accepted(register(channels=channels))

    assert device_registered(events).channels == channels


@pytest.mark.parametrize("expiration", [NOW, NOW - 1, 0, 1_750_000_000])
def test_given_an_expiration_not_in_the_future_when_registering_then_rejected_5004(
    expiration: int,
) -> None:
    decision = Registry().run(register(expiration=expiration))

    assert "'expiration'" in assert_rejected(decision, rules.INVALID_EXPIRATION)


def test_given_an_expiration_in_the_future_when_registering_then_it_is_on_event_and_state() -> None:
    registry = Registry()

    events = registry.accepted(register(channels=("news",), expiration=NOW + 1))

    assert device_registered(events).expiration == NOW + 1
    assert registry.state().channels["news"].expiration == NOW + 1


def test_given_an_empty_device_token_when_registering_then_rejected_5002() -> None:
    decision = Registry().run(register(device_token=""))

    assert "'deviceToken'" in assert_rejected(decision, rules.INVALID_REGISTRATION)


def test_given_a_rejected_command_then_the_outcome_carries_its_identity_and_no_ids() -> None:
    decision = Registry().run(register("reg-x", os="palm"))

    assert decision.outcome.command_id == "reg-x"
    assert decision.outcome.app_id == APP
    assert decision.outcome.device_id == DEVICE
    assert decision.outcome.registration_ids == {}


def test_given_a_user_token_when_registering_then_it_is_recorded_on_the_event() -> None:
    events = Registry().accepted(register(user_token="user-42"))

    assert device_registered(events).user_token == "user-42"


def test_given_a_registered_device_when_re_registering_then_it_is_an_upsert() -> None:
    # Given
    registry = Registry()
    first = NOW + DAY
    second = NOW + 2 * DAY
    registry.accepted(
        register(
            "reg-1",
            device_token="t1",
            os="ios",
            os_version="17.1",
            channels=("a", "b"),
            expiration=first,
        )
    )

    # When
    events = registry.accepted(
        register(
            "reg-2",
            device_token="t2",
            os="android",
            os_version="14",
            channels=("b", "c"),
            expiration=second,
        ),
        NOW + HOUR,
    )

    # Then: the event names only this call's channels ...
    registered = device_registered(events)
    assert registered.channels == ("b", "c")
    assert set(registered.registration_ids) == {"b", "c"}
    # ... token, os and version are replaced, named channels refreshed, the others kept.
    state = registry.state()
    assert (state.device_token, state.os, state.os_version) == ("t2", "ANDROID", "14")
    assert {name: sub.expiration for name, sub in state.channels.items()} == {
        "a": first,
        "b": second,
        "c": second,
    }


def test_given_a_channel_with_expiration_when_re_registered_without_then_it_never_expires() -> None:
    registry = Registry()
    registry.accepted(register("reg-1", channels=("news",), expiration=NOW + HOUR))

    registry.accepted(register("reg-2", channels=("news",), expiration=None), NOW + 1)

    assert registry.state().channels["news"] == Subscription(
        identity.registration_id(APP, DEVICE, "news"), None
    )


def test_given_a_device_when_registering_then_registration_ids_are_upper_case_uuids() -> None:
    decision = Registry().run(register(channels=("news", "sports")))

    ids = decision.outcome.registration_ids
    assert set(ids) == {"news", "sports"}
    for channel, registration_id in ids.items():
        assert registration_id == str(uuid.UUID(registration_id)).upper()
        assert registration_id == identity.registration_id(APP, DEVICE, channel)
    assert device_registered(decision.events).registration_ids == ids


def test_given_a_re_registration_then_registration_ids_are_stable() -> None:
    registry = Registry()
    before = registry.run(register("reg-1", channels=("news",))).outcome.registration_ids
    registry.accepted(unregister("unreg-1"), NOW + 1)

    after = registry.run(register("reg-2", channels=("news",)), NOW + 2).outcome.registration_ids

    assert before == after


def test_given_different_apps_devices_or_channels_then_registration_ids_differ() -> None:
    ids = {
        identity.registration_id("app-1", "device-1", "news"),
        identity.registration_id("app-2", "device-1", "news"),
        identity.registration_id("app-1", "device-2", "news"),
        identity.registration_id("app-1", "device-1", "sports"),
        # Ambiguous concatenations must not collide either.
        identity.registration_id("app-1", "device-1\nnews", "x"),
    }
    assert len(ids) == 5


@pytest.mark.parametrize(
    ("field_name", "property_name"),
    [("command_id", "commandId"), ("app_id", "appId"), ("device_id", "deviceId")],
)
@pytest.mark.parametrize("make", [register, unregister, expire], ids=lambda f: f.__name__)
def test_given_a_command_without_identity_when_deciding_then_rejected_5002_naming_it(
    make: Callable[[], AnyCommand], field_name: str, property_name: str
) -> None:
    command = msgspec.structs.replace(make(), **{field_name: ""})

    decision = decide(empty_state(APP, DEVICE), set(), command, NOW)

    assert f"'{property_name}'" in assert_rejected(decision, rules.INVALID_REGISTRATION)


# --- UnregisterDevice -----------------------------------------------------------------------


def test_given_an_unknown_device_when_unregistering_then_rejected_5001() -> None:
    decision = Registry().run(unregister())

    message = assert_rejected(decision, rules.UNKNOWN_DEVICE_DELETE)
    assert DEVICE in message


def test_given_a_device_when_unregistering_without_channels_then_all_are_removed() -> None:
    registry = Registry()
    registry.accepted(register(channels=("a", "b")))

    events = registry.accepted(unregister(), NOW + 1)

    [event] = events
    assert isinstance(event, DeviceUnregistered)
    assert set(event.channels) == {"a", "b"}
    assert not registry.state().exists


def test_given_a_device_when_unregistering_some_channels_then_only_those_are_removed() -> None:
    registry = Registry()
    registry.accepted(register(channels=("a", "b", "c")))

    [event] = registry.accepted(unregister(channels=("a", "c")), NOW + 1)

    assert isinstance(event, DeviceUnregistered)
    assert event.channels == ("a", "c")
    assert set(registry.state().channels) == {"b"}


def test_given_known_and_unknown_channels_when_unregistering_then_known_go() -> None:
    registry = Registry()
    registry.accepted(register(channels=("a", "b")))

    [event] = registry.accepted(unregister(channels=("a", "zzz", "a")), NOW + 1)

    assert isinstance(event, DeviceUnregistered)
    assert event.channels == ("a",)


def test_given_a_device_when_unregistering_channels_it_does_not_have_then_rejected_5001() -> None:
    registry = Registry()
    registry.accepted(register(channels=("a",)))

    decision = registry.run(unregister(channels=("b", "c")))

    message = assert_rejected(decision, rules.UNKNOWN_DEVICE_DELETE)
    assert "b,c" in message
    assert set(registry.state().channels) == {"a"}


@pytest.mark.parametrize("channels", [("",), ("a/b",)])
def test_given_an_invalid_channel_when_unregistering_then_rejected_5002(
    channels: tuple[str, ...],
) -> None:
    registry = Registry()
    registry.accepted(register(channels=("a",)))

    assert_rejected(registry.run(unregister(channels=channels)), rules.INVALID_REGISTRATION)


def test_given_an_unregistered_device_when_unregistering_again_then_rejected_5001() -> None:
    registry = Registry()
    registry.accepted(register())
    registry.accepted(unregister("unreg-1"))

    assert_rejected(registry.run(unregister("unreg-2")), rules.UNKNOWN_DEVICE_DELETE)


@pytest.mark.parametrize("channels", [None, ("news",)])
def test_given_every_channel_expired_when_unregistering_then_device_counts_as_unknown(
    channels: tuple[str, ...] | None,
) -> None:
    # Given: the expiration passed, but no ExpireRegistration has been decided yet.
    registry = Registry()
    registry.accepted(register(channels=("news", "sports"), expiration=NOW + HOUR), NOW)

    # When
    decision = registry.run(unregister(channels=channels), NOW + HOUR)

    # Then
    assert decision.outcome.code == rules.UNKNOWN_DEVICE_DELETE
    assert decision.events == ()


def test_given_one_active_channel_left_when_unregistering_then_only_active_ones_removed() -> None:
    # Given a device whose "old" channel has expired (no expiry event yet) and "forever" not
    registry = Registry()
    registry.accepted(register("reg-1", channels=("old",), expiration=NOW + HOUR))
    registry.accepted(register("reg-2", channels=("forever",)))

    # When the whole registration is cancelled
    [event] = registry.accepted(unregister(), NOW + 2 * HOUR)

    # Then the active channel is unregistered; the passed one is left to its expiry event
    assert isinstance(event, DeviceUnregistered)
    assert event.channels == ("forever",)
    assert set(registry.state().channels) == {"old"}
    [expired] = registry.accepted(expire("exp-1", expiration=NOW + HOUR), NOW + 2 * HOUR)
    assert isinstance(expired, RegistrationExpired)
    assert expired.channels == ("old",)
    assert not registry.state().exists


# --- ExpireRegistration ---------------------------------------------------------------------


def test_given_channels_with_several_expirations_when_expiring_then_only_due_ones_expire() -> None:
    # Given: c expires at t2; a, b at t1 (earlier); d at t3 (later); e never.
    t1, t2, t3 = NOW + HOUR, NOW + 2 * HOUR, NOW + 3 * HOUR
    registry = Registry()
    registry.accepted(register("reg-1", channels=("c",), expiration=t2))
    registry.accepted(register("reg-2", channels=("a", "b"), expiration=t1))
    registry.accepted(register("reg-3", channels=("d",), expiration=t3))
    registry.accepted(register("reg-4", channels=("e",)))
    version, last_hash = registry.state().version, registry.state().last_hash

    # When
    events = registry.accepted(expire(expiration=t2), t2)

    # Then: one event per distinct expiration, oldest first, chained.
    expired = only(events, RegistrationExpired)
    assert len(expired) == len(events)
    assert [(e.expiration, set(e.channels)) for e in expired] == [
        (t1, {"a", "b"}),
        (t2, {"c"}),
    ]
    assert [e.version for e in events] == [version + 1, version + 2]
    assert [e.prev_hash for e in events] == [last_hash, events[0].hash]
    assert len({e.event_id for e in events}) == 2
    assert set(registry.state().channels) == {"d", "e"}


def test_given_nothing_due_when_expiring_then_accepted_with_no_events_and_a_note() -> None:
    registry = Registry()
    registry.accepted(register(channels=("a",), expiration=NOW + HOUR))
    before = registry.state()

    decision = registry.run(expire(expiration=NOW + HOUR), NOW + HOUR - 1)

    assert decision.outcome.accepted
    assert decision.events == ()
    assert decision.outcome.event_ids == ()
    assert decision.outcome.note
    assert registry.state() == before


def test_given_an_unknown_device_when_expiring_then_the_stale_command_is_a_no_op() -> None:
    decision = Registry().run(expire())

    assert decision.outcome.accepted
    assert decision.events == ()
    assert decision.outcome.note


def test_given_a_refresh_before_expiry_when_the_old_expiration_arrives_then_it_is_stale() -> None:
    # Given: the registration was refreshed just before the scheduler's command arrives.
    registry = Registry()
    registry.accepted(register("reg-1", channels=("a",), expiration=NOW + HOUR))
    registry.accepted(register("reg-2", channels=("a",), expiration=NOW + DAY), NOW + HOUR - 1)

    # When
    decision = registry.run(expire(expiration=NOW + HOUR), NOW + HOUR)

    # Then
    assert decision.events == ()
    assert registry.state().channels["a"].expiration == NOW + DAY


def test_given_every_channel_expired_then_the_device_no_longer_exists() -> None:
    registry = Registry()
    registry.accepted(register(channels=("a", "b"), expiration=NOW + HOUR))

    registry.accepted(expire(expiration=NOW + HOUR), NOW + HOUR)

    assert not registry.state().exists


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
    decision = Registry().run(register("reg-9", channels=("a", "b")))

    assert [e.event_id for e in decision.events] == [
        identity.event_id(APP, "reg-9", i) for i in range(3)
    ]
    assert decision.outcome.event_ids == tuple(e.event_id for e in decision.events)


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
