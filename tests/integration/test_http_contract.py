"""The Backendless Device Registration wire contract (DESIGN.md §5), over real HTTP.

Every test talks to a real devreg worker process on the session's Tansu broker and checks the
bodies byte-for-byte where the SDKs depend on them: status, `{code, message, errorData}` on
errors, `{"registrationId": ...}` on register, a one-element list on GET, `{"result": true}`
on DELETE. Each test uses device ids of its own, so the tests share one worker safely.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiokafka import ConsumerRecord

from events import DeviceRegistered, DeviceUnregistered, decode_event
from events.identity import registration_id
from services.broker import EmbeddedBroker
from tests.support import WorkerProcess, call, now_ms, read_topic, registration

UUID_UPPER = r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}"
REGISTRATION_KEYS = {"id", "deviceId", "deviceToken", "os", "osVersion", "channels", "expiration"}
ERROR_KEYS = {"code", "message", "errorData"}
HOUR_MS = 3_600_000
LIMIT = 500  # characters, for deviceToken, deviceId, osVersion and each channel name


# --- helpers ------------------------------------------------------------------------------


def new_device(label: str = "dev") -> str:
    return f"{label}-{uuid.uuid4().hex}"


def registrations(worker: WorkerProcess, device_id: str | None = None, **auth: str) -> str:
    path = "messaging/registrations" + (f"/{device_id}" if device_id is not None else "")
    return worker.url(path, **auth)


async def register(
    worker: WorkerProcess, device_id: str, app_id: str | None = None, **fields: Any
) -> str:
    """POST a registration that must succeed; returns the `registrationId` text."""
    auth = {"app_id": app_id} if app_id else {}
    status, body = await call(
        "POST", registrations(worker, **auth), json=registration(device_id, **fields)
    )
    assert status == 200, body
    assert_success_body(body)
    assert set(body) == {"registrationId"}, body
    text: str = body["registrationId"]
    return text


async def get_registration(worker: WorkerProcess, device_id: str) -> dict[str, Any]:
    """GET a registration that must exist; returns the one object of the answer's list."""
    status, body = await call("GET", registrations(worker, device_id))
    assert status == 200, body
    assert_success_body(body)
    assert isinstance(body, list), body
    assert len(body) == 1, body
    (found,) = body
    assert set(found) == REGISTRATION_KEYS, found
    return dict(found)


def assert_error(status: int, body: Any, code: int, http_status: int = 400) -> str:
    """A Backendless error: exactly `{code, message, errorData: {}}`; returns the message."""
    assert status == http_status, (status, body)
    assert isinstance(body, dict), body
    assert set(body) == ERROR_KEYS, body
    assert body["code"] == code, body
    assert isinstance(body["message"], str), body
    assert body["message"], body
    assert body["errorData"] == {}, body
    return str(body["message"])


def assert_success_body(body: Any) -> None:
    """The Swift SDK reads any body with top-level `code` and `message` as a fault."""
    if isinstance(body, dict):
        assert not {"code", "message"} <= set(body), body


def pairs(registration_id_text: str) -> list[tuple[str, str]]:
    """`"<ID>::<channel>,<ID>::<channel>"` to [(id, channel), ...], checking each id's form."""
    result = []
    for pair in registration_id_text.split(","):
        match = re.fullmatch(rf"({UUID_UPPER})::(.+)", pair)
        assert match is not None, registration_id_text
        result.append((match.group(1), match.group(2)))
    return result


async def send_raw(method: str, url: str, data: bytes, content_type: str | None) -> tuple[int, Any]:
    """A request with a body exactly as given; the answer must be JSON whatever the status."""
    headers = {"Content-Type": content_type} if content_type else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, data=data, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


def device_events(records: list[ConsumerRecord[bytes, bytes]], device_id: str) -> list[Any]:
    return [
        event
        for event in (decode_event(r.value) for r in records if r.value is not None)
        if getattr(event, "device_id", None) == device_id
    ]


# --- register, read, delete ----------------------------------------------------------------


async def test_given_a_new_device_when_registered_read_deleted_and_read_again_then_it_is_gone(
    devreg_worker: WorkerProcess,
) -> None:
    device = new_device()

    # When it is registered on two channels
    text = await register(devreg_worker, device, channels=["alerts", "news"])
    # Then the answer pairs an upper-case UUID with each channel, in the order named
    assert [channel for _, channel in pairs(text)] == ["alerts", "news"]

    # When it is read
    found = await get_registration(devreg_worker, device)
    # Then it is what was sent, with the first channel's registration id
    assert found == {
        "id": registration_id("app-a", device, "alerts"),
        "deviceId": device,
        "deviceToken": f"token-{device}",
        "os": "ANDROID",
        "osVersion": "14",
        "channels": ["alerts", "news"],
        "expiration": None,
    }

    # When it is deleted
    status, body = await call("DELETE", registrations(devreg_worker, device))
    # Then the answer is exactly a JSON true
    assert (status, body) == (200, {"result": True})

    # When it is read again
    status, body = await call("GET", registrations(devreg_worker, device))
    # Then it is unknown: 5000, Backendless error body
    message = assert_error(status, body, 5000)
    assert device in message


async def test_given_channels_named_when_registering_then_ids_follow_the_named_order(
    devreg_worker: WorkerProcess,
) -> None:
    # Given channels named out of alphabetical order
    device = new_device()
    channels = ["zeta", "alpha", "mid"]

    # When the device registers on them
    text = await register(devreg_worker, device, channels=channels)

    # Then there is one pair per channel, in the order named, with the stable ids
    assert pairs(text) == [(registration_id("app-a", device, c), c) for c in channels]


async def test_given_no_channels_when_registering_then_one_pair_for_default(
    devreg_worker: WorkerProcess,
) -> None:
    device = new_device()

    # When a device registers without naming channels
    text = await register(devreg_worker, device)

    # Then it is registered on "default" only
    assert pairs(text) == [(registration_id("app-a", device, "default"), "default")]
    assert (await get_registration(devreg_worker, device))["channels"] == ["default"]


async def test_given_a_post_answered_when_reading_at_once_then_the_write_is_visible(
    devreg_worker: WorkerProcess,
) -> None:
    # Read-your-writes: POST and DELETE answer only once the projection shows their effect.
    for round_ in range(5):
        device = new_device(f"ryw{round_}")
        # When a device is registered, Then a GET right after the answer returns it
        await register(devreg_worker, device, deviceToken=f"t{round_}")
        assert (await get_registration(devreg_worker, device))["deviceToken"] == f"t{round_}"
        # When it is re-registered with a new token, Then a GET right after shows the new one
        await register(devreg_worker, device, deviceToken=f"u{round_}")
        assert (await get_registration(devreg_worker, device))["deviceToken"] == f"u{round_}"
        # When it is deleted, Then a GET right after no longer finds it
        status, body = await call("DELETE", registrations(devreg_worker, device))
        assert (status, body) == (200, {"result": True})
        status, body = await call("GET", registrations(devreg_worker, device))
        assert_error(status, body, 5000)


async def test_given_concurrent_posts_for_one_device_when_all_answered_then_all_channels_stay(
    devreg_worker: WorkerProcess,
) -> None:
    # Given one device registering on 20 channels in 20 concurrent requests
    device = new_device()
    channels = [f"c{i:02d}" for i in range(20)]
    answers = await asyncio.gather(
        *(
            call("POST", registrations(devreg_worker), json=registration(device, channels=[c]))
            for c in channels
        )
    )

    # Then every request succeeds and no upsert lost another's channel
    assert [status for status, _ in answers] == [200] * len(channels), answers
    assert (await get_registration(devreg_worker, device))["channels"] == channels


async def test_given_a_registered_device_when_registering_again_then_it_is_an_upsert(
    devreg_worker: WorkerProcess,
) -> None:
    # Given a device on channels a and b
    device = new_device()
    first = await register(
        devreg_worker,
        device,
        deviceToken="old-token",
        os="ANDROID",
        osVersion="13",
        channels=["a", "b"],
    )

    # When it registers again on channel c with a new token, os and os version
    second = await register(
        devreg_worker, device, deviceToken="new-token", os="IOS", osVersion="17", channels=["c"]
    )

    # Then token, os and os version are replaced and a, b stay beside c
    found = await get_registration(devreg_worker, device)
    assert found["deviceToken"] == "new-token"
    assert found["os"] == "IOS"
    assert found["osVersion"] == "17"
    assert found["channels"] == ["a", "b", "c"]
    # And the answer names only the channels of this call
    assert [c for _, c in pairs(second)] == ["c"]
    # And registering on a again gives a its first id back
    again = await register(devreg_worker, device, channels=["a"])
    assert pairs(again) == [pairs(first)[0]]


async def test_given_one_device_id_when_registered_under_two_apps_then_ids_are_per_app(
    devreg_worker: WorkerProcess,
) -> None:
    device = new_device()

    # When the same device id registers on the same channel under app-a twice and app-b once
    first_a = await register(devreg_worker, device, channels=["news"])
    second_a = await register(devreg_worker, device, channels=["news"], deviceToken="other")
    in_b = await register(devreg_worker, device, app_id="app-b", channels=["news"])

    # Then the id is stable per (app, device, channel) and differs between apps
    assert first_a == second_a == f"{registration_id('app-a', device, 'news')}::news"
    assert in_b == f"{registration_id('app-b', device, 'news')}::news"
    assert first_a != in_b


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


# --- bad requests --------------------------------------------------------------------------


def good_body() -> bytes:
    return f'{{"deviceToken": "t", "deviceId": "{new_device()}", "os": "IOS"}}'.encode()


BAD_REQUESTS = [
    pytest.param(b'{"deviceToken": "t", "deviceId": ', "application/json", "", id="malformed"),
    pytest.param(b"", "application/json", "", id="empty"),
    pytest.param(b"[]", "application/json", "", id="array"),
    pytest.param(b"null", "application/json", "", id="null"),
    pytest.param(
        b'{"deviceToken": "t", "deviceId": "d", "os": "IOS", "channels": "x"}',
        "application/json",
        "channels",
        id="channels-not-a-list",
    ),
    pytest.param(
        b'{"deviceToken": "t", "deviceId": "d", "os": "IOS", "channels": [1]}',
        "application/json",
        "channels",
        id="channel-not-text",
    ),
    pytest.param(
        b'{"deviceToken": 7, "deviceId": "d", "os": "IOS"}',
        "application/json",
        "deviceToken",
        id="token-not-text",
    ),
    pytest.param(
        b'{"deviceToken": "t", "deviceId": "d", "os": "IOS", "expiration": "soon"}',
        "application/json",
        "expiration",
        id="expiration-not-a-number",
    ),
    pytest.param(
        b'{"deviceId": "d", "os": "IOS"}', "application/json", "deviceToken", id="no-token"
    ),
    pytest.param(
        b'{"deviceToken": "t", "os": "IOS"}', "application/json", "deviceId", id="no-device-id"
    ),
    pytest.param(None, "text/plain", "Content-Type", id="text-plain"),
    pytest.param(None, None, "Content-Type", id="no-content-type"),
]


@pytest.mark.parametrize(("data", "content_type", "named"), BAD_REQUESTS)
async def test_given_a_bad_request_body_when_registering_then_400_with_a_backendless_error(
    devreg_worker: WorkerProcess, data: bytes | None, content_type: str | None, named: str
) -> None:
    status, body = await send_raw(
        "POST",
        registrations(devreg_worker),
        data if data is not None else good_body(),
        content_type,
    )
    # Then a Backendless error, never a 500, naming what was wrong where there is a name
    message = assert_error(status, body, 5002)
    assert named in message


async def test_given_a_body_above_64_kib_when_registering_then_413_with_a_backendless_error(
    devreg_worker: WorkerProcess,
) -> None:
    body = registration(new_device(), deviceToken="t" * (64 * 1024 + 1))
    status, answer = await call("POST", registrations(devreg_worker), json=body)
    assert_error(status, answer, 5002, http_status=413)


# --- authentication and tenancy -------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param({"app_id": "no-such-app"}, id="unknown-app"),
        pytest.param({"key": "wrong-key"}, id="wrong-key"),
        pytest.param({"app_id": "app-b", "key": "key-a"}, id="other-apps-key"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_given_bad_credentials_when_calling_then_401_with_a_backendless_error(
    devreg_worker: WorkerProcess, auth: dict[str, str], method: str
) -> None:
    # Given a device registered with good credentials
    device = new_device()
    await register(devreg_worker, device)
    url = registrations(devreg_worker, None if method == "POST" else device, **auth)

    # When it is called with bad ones
    payload = registration(device, deviceToken="hijacked") if method == "POST" else None
    status, body = await call(method, url, json=payload)

    # Then 401 with the Backendless error body, and the registration is untouched
    assert_error(status, body, 8002, http_status=401)
    assert (await get_registration(devreg_worker, device))["deviceToken"] == f"token-{device}"


async def test_given_a_device_of_app_a_when_app_b_reads_or_deletes_it_then_it_is_not_there(
    devreg_worker: WorkerProcess,
) -> None:
    # Given a device registered under app-a
    device = new_device()
    await register(devreg_worker, device)

    # When app-b reads it, Then it is unknown (5000)
    status, body = await call("GET", registrations(devreg_worker, device, app_id="app-b"))
    assert_error(status, body, 5000)
    # When app-b deletes it, Then it is unknown (5001)
    status, body = await call("DELETE", registrations(devreg_worker, device, app_id="app-b"))
    assert_error(status, body, 5001)
    # And app-a still has it
    assert (await get_registration(devreg_worker, device))["channels"] == ["default"]


# --- delete ------------------------------------------------------------------------------


async def test_given_a_device_on_two_channels_when_deleting_one_then_the_other_stays(
    devreg_worker: WorkerProcess,
) -> None:
    device = new_device()
    await register(devreg_worker, device, channels=["a", "b"])

    status, body = await call("DELETE", registrations(devreg_worker, device) + "?channels=a")

    assert (status, body) == (200, {"result": True})
    found = await get_registration(devreg_worker, device)
    assert found["channels"] == ["b"]
    assert found["id"] == registration_id("app-a", device, "b")


async def test_given_an_unknown_device_when_deleting_then_5001(
    devreg_worker: WorkerProcess,
) -> None:
    device = new_device()
    status, body = await call("DELETE", registrations(devreg_worker, device))
    assert device in assert_error(status, body, 5001)


# --- the log ------------------------------------------------------------------------------


async def test_given_a_user_token_header_when_registering_and_deleting_then_events_carry_it(
    broker: EmbeddedBroker, devreg_worker: WorkerProcess
) -> None:
    device = new_device()
    token = f"user-{uuid.uuid4().hex}"

    # When a device registers and unregisters with a user-token header
    status, body = await call(
        "POST",
        registrations(devreg_worker),
        json=registration(device),
        headers={"user-token": token},
    )
    assert status == 200, body
    status, body = await call(
        "DELETE", registrations(devreg_worker, device), headers={"user-token": token}
    )
    assert status == 200, body

    # Then both events in the log record it
    def both(records: list[ConsumerRecord[bytes, bytes]]) -> bool:
        return len(device_events(records, device)) >= 2

    records = await read_topic(broker.bootstrap, f"{devreg_worker.prefix}.events", both)
    registered, unregistered = device_events(records, device)
    assert isinstance(registered, DeviceRegistered)
    assert registered.user_token == token
    assert isinstance(unregistered, DeviceUnregistered)
    assert unregistered.user_token == token


# --- operations ---------------------------------------------------------------------------


async def test_given_a_running_worker_when_probing_then_health_readiness_and_metrics_answer(
    devreg_worker: WorkerProcess,
) -> None:
    # Given at least one command processed
    await register(devreg_worker, new_device())

    status, body = await call("GET", f"{devreg_worker.base_url}/healthz")
    assert status == 200, body
    status, body = await call("GET", f"{devreg_worker.base_url}/readyz")
    assert status == 200, body

    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{devreg_worker.base_url}/metrics") as response,
    ):
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    assert "# TYPE devreg_commands_total counter" in text.splitlines()
    assert re.search(r'^devreg_commands_total\{result="accepted"\} [1-9]\d*$', text, re.M), text


async def test_given_every_success_route_when_called_then_no_body_has_code_and_message(
    devreg_worker: WorkerProcess,
) -> None:
    device = new_device()
    base = devreg_worker.base_url
    answers = [
        await call("POST", registrations(devreg_worker), json=registration(device)),
        await call("GET", registrations(devreg_worker, device)),
        await call("GET", devreg_worker.url("info")),
        await call("GET", devreg_worker.url("messaging/pushtemplates")),
        await call("GET", devreg_worker.url("messaging/pushtemplates/ios")),
        await call("GET", f"{base}/healthz"),
        await call("GET", f"{base}/readyz"),
        await call("DELETE", registrations(devreg_worker, device)),
    ]
    for status, body in answers:
        assert status == 200, body
        assert_success_body(body)
    assert answers[2][1] == {}
    assert answers[3][1] == {}
