"""decide(): registering devices: channels, upserts, registration ids."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from events import ChannelCreated, DeviceRegistered, Subscription, encode, identity
from tests.unit.domain import (
    APP,
    DAY,
    DEVICE,
    HOUR,
    NOW,
    Registry,
    device_registered,
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


def test_given_an_expiration_in_the_future_when_registering_then_it_is_on_event_and_state() -> None:
    registry = Registry()

    events = registry.accepted(register(channels=("news",), expiration=NOW + 1))

    assert device_registered(events).expiration == NOW + 1
    assert registry.state().channels["news"].expiration == NOW + 1


def test_given_a_fingerprint_when_registering_then_the_event_carries_it_never_a_token() -> None:
    # Given a command with a fingerprint, and (as only a Kafka publisher could) a raw token
    command = msgspec.structs.replace(
        register(user_token="user-42"), user_token_fingerprint="k1:abc"
    )

    # Then the event records the fingerprint and nothing of the raw token
    event = device_registered(Registry().accepted(command))
    assert (event.user_token, event.user_token_fingerprint) == (None, "k1:abc")
    assert b"user-42" not in encode(event)


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
