"""The command processor's sender hands each partition's records to Kafka as record batches
(services/stream/batch_sender.py), and works out where every event landed from the batch's base
offset.

What it reports is what the write-through folds and what read-your-writes waits for, so it must
be exactly what the log holds: the same offsets, keys and values, batch after batch, and across
a record batch that filled up and was split.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from events import RegisterDevice, decide, empty_state
from events.identity import partition_key
from projections.positions import Record
from services.config import Settings, load_settings
from services.kafka.partitioner import key_partition
from services.log.broker import EmbeddedBroker
from services.log.topics import ensure_topics
from services.metrics import Metrics
from services.stream.batch_sender import BatchSender, Emission
from services.stream.ownership import Ownership
from services.stream.visibility import Visibility
from tests.support import PARTITIONS, now_ms
from tests.topics import read_records

APP = "app"
OWNERSHIP = Ownership("http://unused", PARTITIONS)


@pytest.fixture
async def settings(broker: EmbeddedBroker, tmp_path: Path) -> Settings:
    env = {
        "KAFKA_BOOTSTRAP": broker.bootstrap,
        "DEVREG_DATA_DIR": str(tmp_path),
        "DEVREG_APPS": f"{APP}:key",
        "DEVREG_TOPIC_PREFIX": f"sender-{uuid.uuid4().hex[:8]}",
        "DEVREG_PARTITIONS": str(PARTITIONS),
    }
    settings = load_settings(env)
    await ensure_topics(settings, broker.kafka)
    return settings


@pytest.fixture
async def producer(broker: EmbeddedBroker) -> AsyncIterator[AIOKafkaProducer]:
    # Small record batches: a decided batch fills several per partition.
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap, max_batch_size=4096, partitioner=key_partition
    )
    await producer.start()
    yield producer
    await producer.stop()


def emissions(first: int, count: int) -> list[Emission]:
    """Registrations of new devices, decided, as the processor hands them to the sender."""
    out = []
    for n in range(first, first + count):
        device = f"device-{n}"
        command = RegisterDevice(
            command_id=f"c{n}",
            app_id=APP,
            device_id=device,
            device_token=f"t{n}",
            os="IOS",
            os_version="17",
        )
        decision = decide(empty_state(APP, device), {"default"}, command, now_ms())
        partition = OWNERSHIP.partition_of(APP, device)
        record = Record("commands", partition, n, 0, partition_key(APP, device), b"")
        out.append(Emission(record, decision.outcome, decision.events))
    return out


async def test_given_decided_batches_then_every_acknowledged_event_is_where_the_log_has_it(
    settings: Settings, producer: AIOKafkaProducer, broker: EmbeddedBroker
) -> None:
    sender = BatchSender(settings, producer, Visibility(settings.events_topic), Metrics())
    reported: list[Record] = []
    others: list[Record] = []
    last_events: list[tuple[int, int] | None] = []
    for first in (0, 150):  # two decided batches: the second continues each partition's offsets
        sent = await sender.send(emissions(first, 150), [])
        acknowledged = await sender.acknowledged(sent)
        reported += acknowledged.events
        others += acknowledged.others
        last_events += acknowledged.last_events

    logged = await read_records(broker.bootstrap, settings.events_topic, 300, 20)
    in_log = {(r.partition, r.offset): (r.key, r.value, r.timestamp) for r in logged}
    assert len(reported) == len(in_log) == 300
    for record in reported:
        assert in_log[(record.partition, record.offset)] == (
            record.key,
            record.value,
            record.timestamp,
        )
    # each command's last event position is its (only) event's
    assert last_events == [(r.partition, r.offset) for r in reported]
    outcomes = await read_records(broker.bootstrap, settings.outcomes_topic, 300, 20)
    assert sorted(r.key for r in outcomes) == sorted(r.key for r in reported)
    # and every outcome is reported where the log holds it (the embedded mode keeps them so)
    outcomes_in_log = {(r.partition, r.offset): (r.key, r.value, r.timestamp) for r in outcomes}
    assert {(r.partition, r.offset): (r.key, r.value, r.timestamp) for r in others} == (
        outcomes_in_log
    )
