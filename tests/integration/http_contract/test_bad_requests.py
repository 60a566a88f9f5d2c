"""Bodies that are not a registration at all: always a Backendless error, never a 500."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.integration.http_contract.registration_api import (
    assert_error,
    new_device,
    registrations,
)
from tests.support import WorkerProcess, call, registration


async def send_raw(method: str, url: str, data: bytes, content_type: str | None) -> tuple[int, Any]:
    """A request with a body exactly as given; the answer must be JSON whatever the status."""
    headers = {"Content-Type": content_type} if content_type else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, data=data, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


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
