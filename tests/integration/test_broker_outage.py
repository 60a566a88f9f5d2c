"""A broker outage: clear 503s, readiness false, no false success, recovery on its own; and a
send Kafka never acknowledges (a command, or a new device's key) while the broker still
answers everything else."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from services.log.broker import EmbeddedBroker
from tests.kafka_front import Front, FrontedBroker
from tests.support import WorkerProcess, call, equals, registration, wait_for


@pytest.fixture
async def fronted(tmp_path: Path) -> AsyncIterator[tuple[Front, WorkerProcess]]:
    """A worker whose broker sits behind a front (tests/kafka_front.py), with a 2 s bound on
    each write (DEVREG_VISIBLE_TIMEOUT_MS)."""
    front = Front(("127.0.0.1", 0))
    broker = FrontedBroker(tmp_path / "broker.log", front)
    await broker.start()
    env = {"DEVREG_VISIBLE_TIMEOUT_MS": "2000"}
    worker = WorkerProcess(tmp_path / "data", broker.bootstrap, env=env)
    try:
        await worker.start()
        yield front, worker
    finally:
        await worker.stop()
        await broker.stop()


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


async def refused_in_time(front: Front, worker: WorkerProcess, device: str) -> str:
    """POST `device`'s registration while the front holds a produce: a 503 with 5901 once the
    2 s bound has passed, a produce held, the device unknown after; returns the message."""
    started = time.monotonic()
    url = worker.url("messaging/registrations")
    status, body = await call("POST", url, json=registration(device))
    took = time.monotonic() - started
    assert (status, body["code"]) == (503, 5901), body
    assert 2 <= took < 2 + 3, took
    assert front.held, "the produce request never reached the front"
    status, answer = await call("GET", worker.url(f"messaging/registrations/{device}"))
    assert (status, answer["code"]) == (400, 5000)
    message: str = body["message"]
    return message


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

        # Then it exits within its budget (and a second for the stores). Whether faust's stop
        # hangs on the frozen broker depends on what it has outstanding at the signal, which
        # this test cannot see (a clean stop came in 2 of 7 full runs): when the stop ran into
        # the budget, the log says what it left
        assert code == 0
        assert took < 2 + 1 + 2, took
        if took >= 2:
            assert "did not stop within DEVREG_STOP_TIMEOUT_MS" in worker.log()
        # And nothing is lost: restarted on the same files, it serves the registration
        await worker.start()
        status, _ = await call("GET", worker.url("messaging/registrations/kept"))
        assert status == 200
    finally:
        await worker.stop()
        await broker.stop()


async def test_given_a_send_kafka_never_acknowledges_then_503_not_a_success_while_ready(
    fronted: tuple[Front, WorkerProcess],
) -> None:
    # Given a worker whose broker sits behind a front, serving, with a 2 s visibility bound
    front, worker = fronted
    url = worker.url("messaging/registrations")
    status, _ = await call("POST", url, json=registration("before"))
    assert status == 200

    # When the next produce to the commands topic is swallowed: the broker never sees it
    # nor answers, while every other connection (the worker's metadata probe, its
    # consumers) is served, so the worker still finds Kafka reachable
    front.hold_produce(f"{worker.prefix}.commands")
    assert await readiness(worker) == 200
    message = await refused_in_time(front, worker, "unacknowledged")

    # Then the client got a 503 with 5901 (Kafka did not acknowledge), not a success, once
    # the bound had passed, and the worker was ready throughout: the slow path ran, not the
    # fail-fast one of an outage already known
    assert "did not acknowledge" in message
    assert await readiness(worker) == 200

    # And once the front lets the held request through, Kafka acknowledges it and the
    # command takes effect after all: a 503 means "not known to be done", and a retry is
    # safe (docs/reliability.md, Known limits)
    front.release()
    await wait_for(
        lambda: _get_ok(worker.url("messaging/registrations/unacknowledged")),
        30,
        "the released command to take effect",
    )
    status, _ = await call("POST", url, json=registration("after"))
    assert status == 200


async def _get_ok(url: str) -> bool:
    status, _ = await call("GET", url)
    return status == 200


async def test_given_a_new_devices_key_kafka_never_acknowledges_then_503_in_time_then_it_registers(
    fronted: tuple[Front, WorkerProcess],
) -> None:
    # Given a worker whose broker sits behind a front, serving, with a 2 s visibility bound
    front, worker = fronted
    url = worker.url("messaging/registrations")

    # When a new device registers and the produce of its data key is swallowed (nothing
    # sealed with the key may be published before Kafka acknowledges the key)
    front.hold_produce(f"{worker.prefix}.keys")
    message = await refused_in_time(front, worker, "keyless")

    # Then the client got a 503 with 5901 once the bound had passed, not a hang, and no
    # command of the device was decided
    assert "did not acknowledge the device's key" in message

    # And once the key is acknowledged, the same registration succeeds
    front.release()
    await wait_for(
        lambda: _post_ok(url, registration("keyless")), 30, "the registration after the key"
    )
