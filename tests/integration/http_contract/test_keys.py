"""Two keys per app (docs/security.md): the REST key, public, opens the Backendless routes only;
the admin key, in the X-Devreg-Admin-Key header, alone opens the rest, on the classic base,
the custom-domain base and the keyless `/admin/{app_id}` base."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tests.integration.http_contract.registration_api import (
    assert_error,
    new_device,
    register,
)
from tests.support import ADMIN_HEADER, ADMIN_KEYS, WorkerProcess, admin_headers, call

# Admin routes under a base, for a device and channel registered by the test.
ADMIN_PATHS = [
    "messaging/channels",
    "messaging/channels/{channel}/devices",
    "messaging/channels/{channel}/devices.ndjson",
    "messaging/registrations/{device}/history",
    "messaging/registrations/{device}/as-of/{now}",
]


async def answer(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as r:
        body = await r.read()
        is_json = r.content_type == "application/json"
        return r.status, (json.loads(body) if is_json else body)


@pytest.fixture(scope="module")
async def registered(devreg_worker: WorkerProcess) -> dict[str, str]:
    device, channel = new_device("keys"), f"keys-{new_device()[-8:]}"
    await register(devreg_worker, device, channels=[channel])
    return {"device": device, "channel": channel, "now": "2999-01-01T00:00:00Z"}


def bases(worker: WorkerProcess) -> dict[str, str]:
    return {
        "classic": worker.url(""),
        "domain": f"{worker.base_url}/api/",
        "admin": worker.admin_url(""),
    }


@pytest.mark.parametrize("base", ["classic", "domain", "admin"])
@pytest.mark.parametrize("path", ADMIN_PATHS)
async def test_given_an_admin_route_then_only_the_admin_key_opens_it(
    devreg_worker: WorkerProcess, registered: dict[str, str], base: str, path: str
) -> None:
    url = bases(devreg_worker)[base] + path.format(**registered)
    # Without the header (the REST key alone, or no key at all): 401, code 8003
    status, body = await answer(url)
    assert_error(status, body, 8003, http_status=401)
    # With a wrong admin key, or another app's: the same
    for wrong in ("x" * 24, ADMIN_KEYS["app-b"]):
        status, body = await answer(url, {ADMIN_HEADER: wrong})
        assert_error(status, body, 8003, http_status=401)
    # With the app's admin key: served
    status, body = await answer(url, admin_headers())
    assert status == 200, body


async def test_given_the_admin_base_then_a_registration_reads_as_get_does(
    devreg_worker: WorkerProcess, registered: dict[str, str]
) -> None:
    path = f"messaging/registrations/{registered['device']}"
    as_get = await call("GET", devreg_worker.url(path))
    assert as_get[0] == 200
    assert await call("GET", devreg_worker.admin_url(path), headers=admin_headers()) == as_get
    status, body = await call("GET", devreg_worker.admin_url(path))
    assert_error(status, body, 8003, http_status=401)
    # And the admin base changes nothing: no POST or DELETE there (a DELETE reads as the
    # classic form of an app "admin", which is reserved: unknown)
    for method in ("POST", "DELETE"):
        status, body = await call(method, devreg_worker.admin_url(path), headers=admin_headers())
        assert status in (401, 404, 405), (method, status, body)
    assert await call("GET", devreg_worker.url(path)) == as_get


async def test_given_an_unknown_app_on_the_admin_base_then_answered_as_a_wrong_key(
    devreg_worker: WorkerProcess,
) -> None:
    url = devreg_worker.admin_url("messaging/channels", app_id="no-such-app")
    status, body = await call("GET", url, headers=admin_headers())
    assert_error(status, body, 8003, http_status=401)


async def test_given_an_admin_key_with_a_wrong_rest_key_then_the_classic_base_refuses(
    devreg_worker: WorkerProcess,
) -> None:
    url = devreg_worker.url("messaging/channels", key="wrong-rest-key")
    status, body = await call("GET", url, headers=admin_headers())
    assert_error(status, body, 8002, http_status=401)


async def test_given_the_rest_key_then_the_backendless_routes_need_nothing_else(
    devreg_worker: WorkerProcess,
) -> None:
    device = new_device()
    await register(devreg_worker, device)
    for base in (devreg_worker.url(""), f"{devreg_worker.base_url}/api/"):
        for path in ("info", "messaging/pushtemplates", f"messaging/registrations/{device}"):
            status, body = await call("GET", base + path)
            assert status == 200, (base, path, body)
    status, body = await call("DELETE", devreg_worker.url(f"messaging/registrations/{device}"))
    assert (status, body) == (200, {"result": True})
