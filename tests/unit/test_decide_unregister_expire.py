"""decide(): unregistering and expiring."""

from __future__ import annotations

import pytest

from events import (
    DeviceUnregistered,
    RegistrationExpired,
    rules,
)
from tests.unit.domain import (
    DAY,
    DEVICE,
    HOUR,
    NOW,
    Registry,
    assert_rejected,
    expire,
    only,
    register,
    unregister,
)

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
