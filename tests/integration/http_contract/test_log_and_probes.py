"""The operational routes: probes and metrics, and success bodies."""

from __future__ import annotations

import re

import aiohttp

from tests.integration.http_contract.registration_api import (
    assert_success_body,
    new_device,
    register,
    registrations,
)
from tests.support import WorkerProcess, call, registration


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
    assert re.search(r'^devreg_commands_total\{result="accepted"\} [1-9]\d*\.0$', text, re.M), text


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
