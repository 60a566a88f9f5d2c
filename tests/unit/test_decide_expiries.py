"""decide_expiries(): one expiry command for many devices of a partition
(`expire-registrations/1`), each device decided as an ExpireRegistration decides it."""

from __future__ import annotations

import msgspec
import pytest

from events import (
    AnyEvent,
    Decision,
    DueExpiry,
    ExpireRegistrations,
    RegistrationExpired,
    decide,
    decide_expiries,
    evolve,
    rules,
)
from events.identity import expiry_event_id
from tests.unit.domain import APP, DEVICE, HOUR, NOW, Registry, assert_rejected, expire, register


def expiries(command_id: str, *device_ids: str, expiration: int = NOW) -> ExpireRegistrations:
    return ExpireRegistrations(
        command_id=command_id,
        app_id=APP,
        devices=tuple(DueExpiry(device_id=d, expiration=expiration, version=1) for d in device_ids),
    )


def run(registry: Registry, command: ExpireRegistrations, now_ms: int) -> Decision:
    """Decide against the registry's states and evolve them, as the processor does."""
    states = {(APP, d.device_id): registry.state(d.device_id) for d in command.devices}
    decision = decide_expiries(states, command, now_ms)
    for event in decision.events:
        assert isinstance(event, RegistrationExpired)
        registry.states[event.device_id] = evolve(registry.state(event.device_id), event)
    return decision


def registry_of(**expirations: int | None) -> Registry:
    registry = Registry()
    for n, (device_id, expiration) in enumerate(expirations.items()):
        command = msgspec.structs.replace(
            register(f"reg-{n}", channels=("news",), expiration=expiration), device_id=device_id
        )
        registry.accepted(command, NOW - HOUR)
    return registry


def test_given_due_not_due_and_unknown_devices_then_one_event_per_expired_device() -> None:
    # Given a device expired at NOW, one expiring later, and one never registered
    registry = registry_of(gone=NOW, later=NOW + HOUR)
    before = registry.state("gone")

    # When one command names all three
    decision = run(registry, expiries("x-1", "gone", "later", "unknown"), NOW)

    # Then only the expired device has an event, chained on its state; the others are stale
    [event] = decision.events
    assert isinstance(event, RegistrationExpired)
    assert (event.device_id, event.channels, event.expiration) == ("gone", ("news",), NOW)
    assert (event.version, event.prev_hash) == (before.version + 1, before.last_hash)
    assert event.command_id == "x-1"
    outcome = decision.outcome
    assert outcome.accepted
    assert outcome.device_id == ""
    assert outcome.event_ids == (event.event_id,)
    assert outcome.stale == ("later", "unknown")
    assert not registry.state("gone").exists
    assert registry.state("later").exists


def test_given_a_device_then_decided_as_its_own_expire_registration_would_be() -> None:
    # Given a device with channels on two expirations, both passed
    registry = registry_of(**{DEVICE: NOW - 10})
    registry.accepted(register("reg-b", channels=("b",), expiration=NOW), NOW - 5)
    alone = Registry(dict(registry.states))

    # When expired by a command of many devices, and (elsewhere) by its own command
    many = run(registry, expiries("x-1", "other", DEVICE), NOW).events
    one = alone.accepted(expire("exp-1", expiration=NOW), NOW)

    # Then the same events but for their ids and the command that carried them
    def facts(e: AnyEvent) -> AnyEvent:
        return msgspec.structs.replace(e, event_id="", command_id="", hash="", prev_hash="")

    assert [facts(e) for e in many] == [facts(e) for e in one]
    assert len(many) == 2


def test_given_the_same_device_expiry_in_two_commands_then_the_same_event_id() -> None:
    # Given two registries in the same state, and two commands that carry one device's expiry
    # with different companions (a command re-sent after a restart, say)
    first, second = registry_of(a=NOW, b=NOW, c=NOW), registry_of(a=NOW, b=NOW, c=NOW)

    # When each is decided
    one = run(first, expiries("x-1", "a", "b"), NOW)
    two = run(second, expiries("x-2", "c", "b"), NOW)

    # Then device b's event id is the same: it names the device's expiry, not the command
    [b1] = [e for e in one.events if isinstance(e, RegistrationExpired) and e.device_id == "b"]
    [b2] = [e for e in two.events if isinstance(e, RegistrationExpired) and e.device_id == "b"]
    assert b1.event_id == b2.event_id == expiry_event_id(APP, "b", NOW, b1.version)
    assert len({e.event_id for e in (*one.events, *two.events)}) == 3


def test_given_a_repeat_after_the_expiry_then_every_device_is_stale() -> None:
    registry = registry_of(a=NOW, b=NOW)
    run(registry, expiries("x-1", "a", "b"), NOW)

    decision = run(registry, expiries("x-2", "b", "a"), NOW + 1)

    assert decision.events == ()
    assert decision.outcome.accepted
    assert decision.outcome.stale == ("b", "a")


@pytest.mark.parametrize(
    "device_ids",
    [
        (),
        tuple(f"d{i}" for i in range(rules.MAX_EXPIRY_DEVICES + 1)),
        ("a", "b", "a"),
        ("a", "b/c"),
        ("a", ""),
    ],
    ids=["none", "too many", "twice", "slash", "empty"],
)
def test_given_an_invalid_device_list_then_rejected_5002(device_ids: tuple[str, ...]) -> None:
    decision = decide_expiries({}, expiries("x-1", *device_ids), NOW)

    assert_rejected(decision, rules.INVALID_REQUEST)


def test_given_exactly_the_most_devices_then_accepted() -> None:
    device_ids = tuple(f"d{i}" for i in range(rules.MAX_EXPIRY_DEVICES))

    decision = decide_expiries({}, expiries("x-1", *device_ids), NOW)

    assert decision.outcome.accepted
    assert decision.outcome.stale == device_ids


def test_given_a_command_of_many_devices_then_decide_for_one_state_refuses_it() -> None:
    with pytest.raises(TypeError):
        decide(Registry().state(), set(), expiries("x-1", "a"), NOW)
