"""Restarts: the stores resume from their own positions, and never serve history the broker lost."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from events import DeviceRegistered, RegisterDevice, decode_event, encode
from events.identity import partition_key
from services.log.broker import EmbeddedBroker
from tests.support import WorkerProcess, call, metric, registration, wait_for
from tests.topics import read_records


async def visible(worker: WorkerProcess, device_id: str) -> bool:
    status, _ = await call("GET", worker.url(f"messaging/registrations/{device_id}"))
    return status == 200


@pytest.fixture
async def worker(broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[WorkerProcess]:
    process = WorkerProcess(tmp_path / "data", broker.bootstrap)
    yield process
    await process.stop()


async def test_given_commands_while_stopped_when_restarted_then_resumes_without_reapplying(
    worker: WorkerProcess, broker: EmbeddedBroker
) -> None:
    # Given a worker that registered devices over HTTP, then stopped cleanly
    await worker.start()
    before = [f"before-{i}" for i in range(20)]
    for device_id in before:
        status, _ = await call(
            "POST", worker.url("messaging/registrations"), json=registration(device_id)
        )
        assert status == 200
    assert await worker.stop() == 0

    # And commands published straight to Kafka while it was down
    after = [f"after-{i}" for i in range(10)]
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        for device_id in after:
            command = RegisterDevice(
                command_id=uuid.uuid4().hex,
                app_id=worker.app_id,
                device_id=device_id,
                device_token=f"t-{device_id}",  # one device per token: each its own
                os="IOS",
                os_version="17",
            )
            await producer.send_and_wait(
                f"{worker.prefix}.commands",
                encode(command),
                key=partition_key(worker.app_id, device_id),
            )
    finally:
        await producer.stop()

    # When it starts again on the same data directory
    await worker.start()

    # Then the new commands are applied, and nothing applied before is applied again
    for device_id in after:
        await wait_for(lambda d=device_id: visible(worker, d), what=f"{device_id} visible")
    for device_id in before:
        assert await visible(worker, device_id)
    assert await metric(worker, "devreg_events_applied_total") == len(after)
    assert await metric(worker, "devreg_events_duplicate_total") == 0
    with sqlite3.connect(worker.data_dir / "projection.sqlite") as db:
        versions = dict(db.execute("SELECT device_id, version FROM devices").fetchall())
    assert versions == dict.fromkeys(before + after, 1)


async def test_given_a_fresh_broker_when_restarted_then_stale_stores_are_discarded(
    tmp_path: Path,
) -> None:
    # Given a worker whose stores hold history from a broker that has since lost it
    first = EmbeddedBroker(log_path=tmp_path / "first.log")
    await first.start()
    worker = WorkerProcess(tmp_path / "data", first.bootstrap)
    try:
        await worker.start()
        status, _ = await call(
            "POST", worker.url("messaging/registrations"), json=registration("lost")
        )
        assert status == 200
        assert await worker.stop() == 0
    finally:
        await first.stop()

    # When it starts on a fresh broker (memory storage: an empty log)
    second = EmbeddedBroker(log_path=tmp_path / "second.log")
    await second.start()
    worker.bootstrap = second.bootstrap
    try:
        await worker.start()

        # Then it says so loudly, moves the stores aside and serves only what the log holds
        assert "DISCARDED" in worker.log()
        assert list((tmp_path / "data").glob("projection.sqlite.discarded-*"))
        assert list((tmp_path / "data").glob("decisions.sqlite.discarded-*"))
        status, body = await call("GET", worker.url("messaging/registrations/lost"))
        assert (status, body["code"]) == (400, 5000)
    finally:
        await worker.stop()
        await second.stop()


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
async def test_given_a_damaged_projection_when_restarted_then_rebuilt_from_the_log(
    worker: WorkerProcess, damage: str
) -> None:
    # Given a device registered, and the worker stopped
    await worker.start()
    status, _ = await call("POST", worker.url("messaging/registrations"), json=registration("kept"))
    assert status == 200
    assert await worker.stop() == 0

    # When its projection file is overwritten with garbage, or deleted (WAL files too)
    projection = worker.data_dir / "projection.sqlite"
    for suffix in ("-wal", "-shm"):
        projection.with_name(projection.name + suffix).unlink(missing_ok=True)
    if damage == "corrupt":
        projection.write_bytes(b"this is not a database" * 512)
    else:
        projection.unlink()
    await worker.start()

    # Then a corrupt file is moved aside loudly, and the projection is rebuilt from the log
    if damage == "corrupt":
        assert "DISCARDED" in worker.log()
        assert list(worker.data_dir.glob("projection.sqlite.discarded-*"))
    await wait_for(lambda: visible(worker, "kept"), what="the device rebuilt from the log")


async def test_given_a_decided_command_when_delivered_again_after_a_restart_then_same_outcome(
    worker: WorkerProcess, broker: EmbeddedBroker
) -> None:
    # Given a command decided once
    command = RegisterDevice(
        command_id="once-only",
        app_id=worker.app_id,
        device_id="idem",
        device_token="t",
        os="IOS",
        os_version="17",
        channels=("news",),
    )
    key = partition_key(worker.app_id, "idem")
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await worker.start()
    await producer.start()
    try:
        await producer.send_and_wait(f"{worker.prefix}.commands", encode(command), key=key)
        await wait_for(lambda: visible(worker, "idem"), what="the first delivery's effect")

        # When it is delivered twice more, across a restart of the worker
        assert await worker.stop() == 0
        await producer.send_and_wait(f"{worker.prefix}.commands", encode(command), key=key)
        await worker.start()
        await producer.send_and_wait(f"{worker.prefix}.commands", encode(command), key=key)
    finally:
        await producer.stop()

    # Then three identical outcomes, and one effect: a single DeviceRegistered, version 1
    outcomes = await read_records(broker.bootstrap, f"{worker.prefix}.outcomes", 3, 30)
    assert len({r.value for r in outcomes}) == 1
    assert len(outcomes) == 3
    events = await read_records(broker.bootstrap, f"{worker.prefix}.events", 2, 30)
    registered = [
        e for r in events if isinstance(e := decode_event(r.value or b""), DeviceRegistered)
    ]
    assert [(e.device_id, e.version) for e in registered] == [("idem", 1)]
