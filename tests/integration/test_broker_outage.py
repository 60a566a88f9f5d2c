"""A broker outage: clear 503s, readiness false, no false success, recovery on its own."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import aiohttp

from services.log.broker import EmbeddedBroker
from tests.support import WorkerProcess, call, equals, registration, wait_for


async def readiness(worker: WorkerProcess) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{worker.base_url}/readyz") as r:
        return r.status


async def test_given_the_broker_stops_answering_then_503_not_ready_and_recovery(
    tmp_path: Path,
) -> None:
    # Given a worker on a broker of its own, serving
    broker = EmbeddedBroker(log_path=tmp_path / "broker.log")
    await broker.start()
    worker = WorkerProcess(tmp_path / "data", broker.bootstrap)
    try:
        await worker.start()
        url = worker.url("messaging/registrations")
        status, _ = await call("POST", url, json=registration("before"))
        assert status == 200

        # When the broker stops answering (frozen: an outage that loses no data)
        assert broker.pid is not None
        os.kill(broker.pid, signal.SIGSTOP)
        try:
            # Then readiness turns false, and a registration gets a clear 503, never a success
            await wait_for(lambda: equals(readiness(worker), 503), 10, "readyz to turn false")
            status, body = await call("POST", url, json=registration("during"))
            assert status == 503
            assert body["code"] == 5901
            assert body["message"]
            # Queries keep being answered from the projection
            status, _ = await call("GET", worker.url("messaging/registrations/before"))
            assert status == 200
            # The outage outlasts the consumer group session (2 s), so the group must re-form
            outage_end = time.monotonic() + 6
            await wait_for(lambda: time.monotonic() >= outage_end, 10, "the outage to last 6 s")
            status, body = await call("POST", url, json=registration("during-2"))
            assert (status, body["code"]) == (503, 5901)
        finally:
            os.kill(broker.pid, signal.SIGCONT)

        # And when the broker answers again, devreg recovers on its own
        await wait_for(lambda: equals(readiness(worker), 200), 30, "readyz to recover")
        status, body = await wait_for(
            lambda: _post_ok(url, registration("after")), 30, "a registration to succeed"
        )
        assert status == 200, body
        status, _ = await call("GET", worker.url("messaging/registrations/after"))
        assert status == 200
    finally:
        await worker.stop()
        await broker.stop()


async def _post_ok(url: str, body: dict[str, object]) -> tuple[int, object] | None:
    status, answer = await call("POST", url, json=body)
    return (status, answer) if status == 200 else None


async def test_given_the_broker_gone_when_the_worker_is_told_to_stop_then_it_exits_in_time(
    tmp_path: Path,
) -> None:
    # Given a worker with a 2 s stop budget, on a broker of its own, holding a registration
    broker = EmbeddedBroker(log_path=tmp_path / "broker.log")
    await broker.start()
    env = {"DEVREG_STOP_TIMEOUT_MS": "2000"}
    worker = WorkerProcess(tmp_path / "data", broker.bootstrap, env=env)
    try:
        await worker.start()
        status, _ = await call(
            "POST", worker.url("messaging/registrations"), json=registration("kept")
        )
        assert status == 200
        # When the broker stops answering and the worker is told to stop (SIGTERM)
        assert broker.pid is not None
        os.kill(broker.pid, signal.SIGSTOP)
        try:
            await wait_for(lambda: equals(readiness(worker), 503), 10, "readyz to turn false")
            started = time.monotonic()
            code = await worker.stop(deadline_s=20)  # fails the test if it is not gone by then
            took = time.monotonic() - started
        finally:
            os.kill(broker.pid, signal.SIGCONT)

        # Then it exits within its budget (and a second for the stores), saying what it left
        assert code == 0
        assert took < 2 + 1 + 2, took
        assert "did not stop within DEVREG_STOP_TIMEOUT_MS" in worker.log()
        # And nothing is lost: restarted on the same files, it serves the registration
        await worker.start()
        status, _ = await call("GET", worker.url("messaging/registrations/kept"))
        assert status == 200
    finally:
        await worker.stop()
        await broker.stop()
