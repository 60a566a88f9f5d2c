"""A worker pauses reading its own events back, and reads again when the log holds more.

Write-through folds the worker's events as soon as Kafka has them; an events partition whose
read-back brings only those copies is paused (services/stream/read_back.py). An event the worker did
not write (a stale worker after a partition move, say) must still reach the projection: at
once when the worker next writes on that partition (the gap), and within the recheck interval
when it does not write again.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from events import ChannelCreated, encode
from events.identity import event_id, seal
from services.log.broker import EmbeddedBroker
from services.stream.ownership import Ownership
from tests.support import (
    PARTITIONS,
    WorkerProcess,
    admin_headers,
    call,
    metric,
    now_ms,
    registration,
    wait_for,
)

OWNERSHIP = Ownership("http://unused", PARTITIONS)


async def register(worker: WorkerProcess, device: str) -> None:
    url = worker.url("messaging/registrations")
    status, body = await call("POST", url, registration(device, channels=["news"]))
    assert status == 200, body  # answered once visible: applied by write-through or read back


def device_on(partition: int, app_id: str) -> str:
    return next(
        device
        for device in (f"rb-{uuid.uuid4().hex[:8]}" for _ in range(1000))
        if OWNERSHIP.partition_of(app_id, device) == partition
    )


async def foreign_channel(broker: EmbeddedBroker, worker: WorkerProcess, partition: int) -> str:
    """A ChannelCreated this worker did not write, straight onto its events partition."""
    channel = f"foreign-{uuid.uuid4().hex[:8]}"
    event = seal(
        ChannelCreated(
            event_id=event_id(worker.app_id, channel, 1),
            app_id=worker.app_id,
            version=1,
            occurred_at=now_ms(),
            command_id=f"elsewhere-{channel}",
            prev_hash="",
            channel=channel,
        )
    )
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        topic = f"{worker.prefix}.events"
        await producer.send_and_wait(topic, encode(event), key=b"elsewhere", partition=partition)
    finally:
        await producer.stop()
    return channel


async def counted(worker: WorkerProcess, sample: str) -> bool:
    return await metric(worker, sample) >= 1


async def shows(worker: WorkerProcess, channel: str) -> bool:
    return channel in await channels(worker)


async def channels(worker: WorkerProcess) -> set[str]:
    status, body = await call("GET", worker.admin_url("messaging/channels"), None, admin_headers())
    assert status == 200, body
    return {c["channel"] for c in body["channels"]}


@pytest.fixture
async def no_recheck(broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[WorkerProcess]:
    env = {"DEVREG_READ_BACK_RECHECK_MS": "600000"}  # only a gap resumes within the test
    async with WorkerProcess(tmp_path / "w", broker.bootstrap, env=env) as worker:
        yield worker


@pytest.fixture
async def quick_recheck(broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[WorkerProcess]:
    env = {"DEVREG_READ_BACK_RECHECK_MS": "300"}
    async with WorkerProcess(tmp_path / "w", broker.bootstrap, env=env) as worker:
        yield worker


async def test_given_a_paused_partition_when_a_foreign_event_precedes_the_next_write_then_both_land(
    broker: EmbeddedBroker, no_recheck: WorkerProcess
) -> None:
    # Given: a registration read back as a copy, so its events partition is paused
    worker, first = no_recheck, f"rb-{uuid.uuid4().hex[:8]}"
    partition = OWNERSHIP.partition_of(worker.app_id, first)
    await register(worker, first)
    await wait_for(lambda: counted(worker, "devreg_read_back_paused_partitions"), 20)

    # When: an event the worker did not write lands there, then the worker writes after it
    channel = await foreign_channel(broker, worker, partition)
    await register(worker, device_on(partition, worker.app_id))

    # Then: the registration became visible (the POST answered 200) and the foreign event is
    # in the projection too: the gap made the worker read the partition again
    assert channel in await channels(worker)
    assert await metric(worker, "devreg_read_back_resumes_total", reason="gap") >= 1


async def test_given_a_paused_partition_when_a_foreign_event_lands_then_the_recheck_reads_it(
    broker: EmbeddedBroker, quick_recheck: WorkerProcess
) -> None:
    # Given
    worker, device = quick_recheck, f"rb-{uuid.uuid4().hex[:8]}"
    await register(worker, device)
    await wait_for(lambda: counted(worker, "devreg_read_back_pauses_total"), 20)

    # When: an event the worker did not write, and no write of its own after it
    channel = await foreign_channel(broker, worker, OWNERSHIP.partition_of(worker.app_id, device))

    # Then: it reaches the projection within a few recheck intervals
    await wait_for(lambda: shows(worker, channel), 10, "the foreign channel")
