"""decide(): the rules a command must meet (codes 5002, 5004, 8000), and where their limits lie."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest

from events import AnyCommand, decide, empty_state, rules
from tests.unit.domain import (
    APP,
    DEVICE,
    NOW,
    Registry,
    assert_rejected,
    device_registered,
    expire,
    register,
    unregister,
)


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


def test_given_an_empty_device_token_when_registering_then_rejected_5002() -> None:
    decision = Registry().run(register(device_token=""))

    assert "'deviceToken'" in assert_rejected(decision, rules.INVALID_REGISTRATION)


def test_given_a_rejected_command_then_the_outcome_carries_its_identity_and_no_ids() -> None:
    decision = Registry().run(register("reg-x", os="palm"))

    assert decision.outcome.command_id == "reg-x"
    assert decision.outcome.app_id == APP
    assert decision.outcome.device_id == DEVICE
    assert decision.outcome.registration_ids == {}


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
