"""Authentication by app id and key in the URL, and one app never seeing another's devices."""

from __future__ import annotations

import pytest

from tests.integration.http_contract.registration_api import (
    assert_error,
    get_registration,
    new_device,
    register,
    registrations,
)
from tests.support import WorkerProcess, call, registration


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
