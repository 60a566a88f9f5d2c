"""Field values: accepted forms of os, osVersion and expiration, refused values, length limits."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.http_contract.registration_api import (
    assert_error,
    get_registration,
    new_device,
    register,
    registrations,
)
from tests.support import WorkerProcess, call, now_ms, registration

HOUR_MS = 3_600_000
LIMIT = 500  # characters, for deviceToken, deviceId, osVersion and each channel name


# --- field values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("os_in", "os_out"), [("ios", "IOS"), ("Android", "ANDROID"), ("wP", "WP"), ("osx", "OSX")]
)
async def test_given_os_in_any_case_when_registering_then_it_reads_back_upper_case(
    devreg_worker: WorkerProcess, os_in: str, os_out: str
) -> None:
    device = new_device()
    await register(devreg_worker, device, os=os_in)
    assert (await get_registration(devreg_worker, device))["os"] == os_out


@pytest.mark.parametrize(("version_in", "version_out"), [(17, "17"), (17.4, "17.4")])
async def test_given_os_version_as_a_json_number_when_registering_then_it_reads_back_as_text(
    devreg_worker: WorkerProcess, version_in: float, version_out: str
) -> None:
    device = new_device()
    await register(devreg_worker, device, osVersion=version_in)
    assert (await get_registration(devreg_worker, device))["osVersion"] == version_out


@pytest.mark.parametrize("os_name", ["SYMBIAN", "", "i os"])
async def test_given_an_unknown_os_when_registering_then_5002(
    devreg_worker: WorkerProcess, os_name: str
) -> None:
    device = new_device()
    status, body = await call(
        "POST", registrations(devreg_worker), json=registration(device, os=os_name)
    )
    assert "os" in assert_error(status, body, 5002)
    # And nothing was registered
    status, body = await call("GET", registrations(devreg_worker, device))
    assert_error(status, body, 5000)


@pytest.mark.parametrize(
    "expiration",
    [
        pytest.param(lambda: now_ms() - 1_000, id="ms"),
        pytest.param(lambda: time.time() - 10.5, id="seconds"),
    ],
)
async def test_given_an_expiration_in_the_past_when_registering_then_5004(
    devreg_worker: WorkerProcess, expiration: Callable[[], float]
) -> None:
    device = new_device()
    status, body = await call(
        "POST", registrations(devreg_worker), json=registration(device, expiration=expiration())
    )
    assert "expiration" in assert_error(status, body, 5004)


async def test_given_an_expiration_in_fractional_seconds_when_registering_then_read_as_seconds(
    devreg_worker: WorkerProcess,
) -> None:
    # Given the JS SDK's form: a Date as (fractional) seconds, below 10^11
    device = new_device()
    seconds = time.time() + 3600.25
    assert seconds < 10**11

    # When it is registered with it
    await register(devreg_worker, device, expiration=seconds)

    # Then GET shows the same instant in ms
    assert (await get_registration(devreg_worker, device))["expiration"] == round(seconds * 1000)


async def test_given_an_expiration_in_ms_when_registering_then_it_reads_back_unchanged(
    devreg_worker: WorkerProcess,
) -> None:
    device = new_device()
    expiration = now_ms() + HOUR_MS
    await register(devreg_worker, device, expiration=expiration)
    assert (await get_registration(devreg_worker, device))["expiration"] == expiration


async def test_given_an_expiration_too_large_to_store_when_registering_then_5004_and_still_up(
    expendable_worker: WorkerProcess,
) -> None:
    # Given an expiration in ms beyond SQLite's INTEGER range (2^63 - 1), still "in the future"
    device = new_device()
    status, body = await call(
        "POST",
        registrations(expendable_worker),
        json=registration(device, expiration=10**19),
    )
    # Then it is refused as an invalid expiration, like one in the past
    assert_error(status, body, 5004)
    # And the worker still serves registrations
    healthy = new_device("after")
    await register(expendable_worker, healthy)
    assert (await get_registration(expendable_worker, healthy))["deviceId"] == healthy


# --- length limits -----------------------------------------------------------------------


def with_length(field: str, device: str, length: int) -> tuple[str, dict[str, Any]]:
    """A registration whose `field` is `length` characters long; returns (device id, body)."""
    value = (device + "x" * length)[:length] if field == "deviceId" else "v" * length
    device_id = value if field == "deviceId" else device
    body = registration(device_id, deviceToken="short-token")
    if field == "channel":
        body["channels"] = [value]
    else:
        body[field] = value
    return device_id, body


LENGTH_FIELDS = [("deviceToken", "deviceToken"), ("deviceId", "deviceId")]
LENGTH_FIELDS += [("osVersion", "osVersion"), ("channel", "channels")]


@pytest.mark.parametrize(("field", "property_name"), LENGTH_FIELDS)
async def test_given_a_value_of_501_characters_when_registering_then_8000_names_the_property(
    devreg_worker: WorkerProcess, field: str, property_name: str
) -> None:
    _, body = with_length(field, new_device(), LIMIT + 1)
    status, answer = await call("POST", registrations(devreg_worker), json=body)
    message = assert_error(status, answer, 8000)
    assert property_name in message


@pytest.mark.parametrize(("field", "property_name"), LENGTH_FIELDS)
async def test_given_a_value_of_500_characters_when_registering_then_it_is_accepted(
    devreg_worker: WorkerProcess, field: str, property_name: str
) -> None:
    device_id, body = with_length(field, new_device(), LIMIT)
    status, answer = await call("POST", registrations(devreg_worker), json=body)
    assert status == 200, answer
    found = await get_registration(devreg_worker, device_id)
    expected = body["channels"] if field == "channel" else body[field]
    assert found[property_name] == expected
