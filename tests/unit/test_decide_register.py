"""decide(): registering devices."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import msgspec
import pytest

from events import (
    AnyCommand,
    ChannelCreated,
    DeviceRegistered,
    Subscription,
    decide,
    empty_state,
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
    assert_rejected,
    device_registered,
    expire,
    only,
    register,
    unregister,
)

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
