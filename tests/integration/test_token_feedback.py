"""Push providers' feedback and one device per token, on the real broker (docs/design.md §4).

Given / When / Then in each test. Each rule fails without its mechanism: a report is stale
because decide() compares the device's registration time with the push's; a device is
superseded because the token index (tokens topic + relay) sends it a command.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.log.broker import EmbeddedBroker
from tests.integration.token_support import admin, device_on, token_on
from tests.support import WorkerProcess, admin_headers, call, now_ms, registration, wait_for


@pytest.fixture(scope="module")
async def devreg_worker(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[WorkerProcess]:
    """app-a keeps one device per token (the default); app-b allows shared tokens."""
    env = {"DEVREG_ALLOW_SHARED_TOKENS": "app-b"}
    data = tmp_path_factory.mktemp("tokens-worker")
    async with WorkerProcess(data, broker.bootstrap, env=env) as worker:
        yield worker


async def _register(worker: WorkerProcess, device: str, token: str, app_id: str = "app-a") -> None:
    status, body = await call(
        "POST",
        worker.url("messaging/registrations", app_id),
        registration(device, deviceToken=token),
    )
    assert status == 200, body


async def _get(worker: WorkerProcess, device: str, app_id: str = "app-a") -> tuple[int, Any]:
    return await call("GET", worker.url(f"messaging/registrations/{device}", app_id))


async def _history_types(worker: WorkerProcess, device: str, app_id: str = "app-a") -> list[Any]:
    status, body = await call(
        "GET",
        worker.admin_url(f"messaging/registrations/{device}/history", app_id),
        headers=admin_headers(app_id),
    )
    assert status == 200, body
    return list(body["events"])


async def _held_by(worker: WorkerProcess, token: str, device: str, app_id: str = "app-a") -> bool:
    status, body = await admin(worker, "POST", "tokens/lookup", {"deviceToken": token}, app_id)
    return status == 200 and body["deviceId"] == device


async def test_given_a_report_for_the_current_token_then_the_device_is_removed_and_history_says_why(
    devreg_worker: WorkerProcess,
) -> None:
    # Given a registered device, found by its token in the index
    device, token = device_on("app-a", 0), token_on("app-a", 1)
    await _register(devreg_worker, device, token)
    await wait_for(lambda: _held_by(devreg_worker, token, device), 20, "the token in the index")

    # When the provider rejects the token of a push sent after the registration (no deviceId:
    # the index names the device)
    report = {
        "deviceToken": token,
        "provider": "apns",
        "reason": "Unregistered",
        "sentAt": now_ms(),
    }
    status, body = await admin(devreg_worker, "POST", "tokens/rejected", report)

    # Then the device is removed, and its history keeps the provider's reason
    assert status == 200, body
    assert body["deviceId"] == device
    assert body["changed"] is True
    status, body = await _get(devreg_worker, device)
    assert (status, body["code"]) == (400, 5000)
    [*_, last] = await _history_types(devreg_worker, device)
    assert last["type"] == "token-rejected/1"
    assert (last["provider"], last["reason"]) == ("apns", "Unregistered")
    # and the token no longer resolves to a device
    await wait_for(lambda: _gone(devreg_worker, token), 20, "the token released from the index")


async def _gone(worker: WorkerProcess, token: str) -> bool:
    status, _ = await admin(worker, "POST", "tokens/lookup", {"deviceToken": token})
    return status == 400


async def test_given_a_report_about_a_push_sent_before_the_device_registered_again_then_ignored(
    devreg_worker: WorkerProcess,
) -> None:
    # Given a push sent at `sent`, then the device registered again (same token)
    device, token = device_on("app-a", 1), token_on("app-a", 2)
    await _register(devreg_worker, device, token)
    sent = now_ms()
    await wait_for(lambda: now_ms() > sent, 5, "the clock to pass the send time")
    await _register(devreg_worker, device, token)

    # When the provider's rejection of that push arrives (the sender names the device)
    report = {
        "deviceToken": token,
        "provider": "fcm",
        "reason": "UNREGISTERED",
        "sentAt": sent,
        "deviceId": device,
    }
    status, body = await admin(devreg_worker, "POST", "tokens/rejected", report)

    # Then the report is ignored, with why, and the device stays registered
    assert status == 200, body
    assert body["changed"] is False
    assert "registered again" in body["note"]
    status, body = await _get(devreg_worker, device)
    assert status == 200, body


async def test_given_a_report_for_a_token_the_device_no_longer_holds_then_ignored(
    devreg_worker: WorkerProcess,
) -> None:
    device = device_on("app-a", 2)
    await _register(devreg_worker, device, "old-" + device)
    await _register(devreg_worker, device, "new-" + device)

    report = {
        "deviceToken": "old-" + device,
        "provider": "fcm",
        "reason": "UNREGISTERED",
        "sentAt": now_ms(),
        "deviceId": device,
    }
    status, body = await admin(devreg_worker, "POST", "tokens/rejected", report)

    assert status == 200, body
    assert body["changed"] is False
    assert "no longer holds this token" in body["note"]


async def test_given_a_token_registered_by_a_second_device_then_the_first_is_superseded(
    devreg_worker: WorkerProcess,
) -> None:
    # Given a device on partition 0 holding a token
    older, newer = device_on("app-a", 0, "older"), device_on("app-a", 2, "newer")
    token = token_on("app-a", 1)  # the index of a third partition
    await _register(devreg_worker, older, token)
    await _register(devreg_worker, older, token)  # its own token again: not superseded

    # When another device id of the app, on another partition, registers the same token
    await _register(devreg_worker, newer, token)

    # Then the older registration is superseded by an event naming the newer device
    async def superseded() -> bool:
        status, _ = await _get(devreg_worker, older)
        return status == 400

    await wait_for(superseded, 20, "the older device to be superseded")
    events = await _history_types(devreg_worker, older)
    assert [e["type"] for e in events] == [
        "device-registered/1",
        "device-registered/1",
        "device-superseded/1",
    ]
    assert events[-1]["by_device_id"] == newer
    status, body = await _get(devreg_worker, newer)
    assert status == 200, body
    assert await _held_by(devreg_worker, token, newer)


async def test_given_an_app_that_allows_shared_tokens_then_no_device_is_superseded(
    devreg_worker: WorkerProcess,
) -> None:
    # Given two devices of app-b sharing a token; then, as a control, two devices of app-a
    # sharing one, the older on the same commands partition and both tokens on the same index
    # partition: the relay and the processor handle them in this order.
    shared, control = token_on("app-b", 0), token_on("app-a", 0)
    first_b, second_b = device_on("app-b", 1, "b1"), device_on("app-b", 2, "b2")
    first_a, second_a = device_on("app-a", 1, "a1"), device_on("app-a", 2, "a2")
    await _register(devreg_worker, first_b, shared, "app-b")
    await _register(devreg_worker, second_b, shared, "app-b")

    # When app-a's duplicate has been superseded (so app-b's claims were folded before it)
    await _register(devreg_worker, first_a, control)
    await _register(devreg_worker, second_a, control)

    async def control_superseded() -> bool:
        status, _ = await _get(devreg_worker, first_a)
        return status == 400

    await wait_for(control_superseded, 20, "app-a's older device to be superseded")

    # Then both of app-b's devices are still registered, and apps never interfere: app-a's
    # token index knows nothing of app-b's token
    for device in (first_b, second_b):
        status, body = await _get(devreg_worker, device, "app-b")
        assert status == 200, body
    status, _ = await admin(devreg_worker, "POST", "tokens/lookup", {"deviceToken": shared})
    assert status == 400
