"""Retention erases a device gone for its app's period, on time and across a restart
(docs/design.md §7). Without the retention scheduler nothing forgets these devices: the test
waits for a DeviceForgotten that never comes."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from services.log.broker import EmbeddedBroker
from tests.support import WorkerProcess, admin_headers, call, now_ms, registration, wait_for

PERIOD_MS = 8_640  # DEVREG_RETENTION_DAYS=app-a:0.0001
ENV = {"DEVREG_RETENTION_DAYS": "app-a:0.0001"}


async def _events(worker: WorkerProcess, device: str, app_id: str = "app-a") -> list[Any]:
    status, body = await call(
        "GET",
        worker.admin_url(f"messaging/registrations/{device}/history", app_id),
        headers=admin_headers(app_id),
    )
    assert status == 200, body
    return list(body["events"])


async def _gone(worker: WorkerProcess, device: str, app_id: str = "app-a") -> int:
    """Register and unregister a device; returns when it was unregistered (event time)."""
    url = worker.url("messaging/registrations", app_id)
    status, body = await call("POST", url, registration(device))
    assert status == 200, body
    status, body = await call("DELETE", f"{url}/{device}")
    assert status == 200, body
    return int((await _events(worker, device, app_id))[-1]["occurred_at"])


async def test_given_a_device_gone_for_the_retention_period_then_it_is_forgotten_across_a_restart(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    data = tmp_path / "worker"
    worker = WorkerProcess(data, broker.bootstrap, env=ENV)
    async with worker:
        # Given a device unregistered while the worker runs, and one in an app without retention
        early = f"ret-{uuid.uuid4().hex[:8]}"
        early_gone = await _gone(worker, early)
        kept = f"kept-{uuid.uuid4().hex[:8]}"
        await _gone(worker, kept, "app-b")

        async def forgotten(device: str) -> bool:
            return (await _events(worker, device))[-1]["type"] == "device-forgotten/1"

        # When the period passes, then it is forgotten, for retention, not before its time
        await wait_for(lambda: forgotten(early), 30, "the gone device to be forgotten")
        last = (await _events(worker, early))[-1]
        assert last["reason"] == "retention"
        assert last["occurred_at"] >= early_gone + PERIOD_MS

        # Given a second device gone just before the worker stops
        late = f"ret-late-{uuid.uuid4().hex[:8]}"
        late_gone = await _gone(worker, late)
    assert now_ms() < late_gone + PERIOD_MS, "the worker must stop before the device is due"

    # When the worker starts again after the device fell due
    await wait_for(lambda: _after(late_gone + PERIOD_MS), 20, "the period to pass")
    async with WorkerProcess(data, broker.bootstrap, prefix=worker.prefix, env=ENV) as again:
        # Then it is forgotten at once, and the app without retention keeps its device
        async def late_forgotten() -> bool:
            return (await _events(again, late))[-1]["type"] == "device-forgotten/1"

        await wait_for(late_forgotten, 30, "the device that fell due meanwhile to be forgotten")
        assert (await _events(again, kept, "app-b"))[-1]["type"] == "device-unregistered/1"


async def _after(instant: int) -> bool:
    return now_ms() > instant
