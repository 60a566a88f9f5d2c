"""Export and import of the log archive, against real Tansu brokers.

The archive is how `make run` keeps the registry across restarts of a memory-only broker, so
these tests re-publish into a second, fresh broker and compare every field of every record.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.kafka.clients import KafkaAccess
from services.log.archive import ArchivedRecord, ArchiveError, export_log, import_log
from services.log.broker import EmbeddedBroker, free_port

PARTITIONS = 3
PER_PARTITION = 2_000  # more than one progress report in all
# Several records in most batches, and in the last one: the case where Tansu under-reports
# the end offset.
BATCH_SIZES = (1, 7, 50, 100, 3)
T0 = 1_700_000_000_000
DEADLINE_S = 10.0


class Exported(msgspec.Struct, frozen=True):
    topic: str
    path: Path
    expected: list[ArchivedRecord]  # in (partition, offset) order
    progress: list[int]


def _topic(label: str) -> str:
    return f"archive-{label}-{uuid.uuid4().hex[:8]}"


async def _create_topics(bootstrap: str, topics: dict[str, int]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, n, 1) for t, n in topics.items()])
    finally:
        await admin.close()


def _record(topic: str, partition: int, offset: int) -> ArchivedRecord:
    """A record exercising the edges: no key, no value, a header without a value."""
    key = None if offset % 11 == 0 else f"app/device-{offset}".encode()
    value = None if offset % 13 == 0 else bytes(range(offset % 256)) + b"\x00\xff"
    headers = (("type", b"DeviceRegistered"), ("trace", None if offset % 2 else b"\x01"))
    return ArchivedRecord(topic, partition, offset, T0 + offset * 7, key, value, headers)


async def _produce(bootstrap: str, topic: str, per_partition: int) -> list[ArchivedRecord]:
    """Publish `per_partition` records to each partition in batches of several records."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_batch_size=1 << 20)
    await producer.start()
    produced: list[ArchivedRecord] = []
    try:
        for partition in range(PARTITIONS):
            offset = 0
            for size in itertools.cycle(BATCH_SIZES):
                if offset >= per_partition:
                    break
                batch = producer.create_batch()
                count = min(size, per_partition - offset)
                records = [_record(topic, partition, offset + i) for i in range(count)]
                for r in records:
                    added = batch.append(
                        key=r.key, value=r.value, timestamp=r.timestamp, headers=list(r.headers)
                    )
                    assert added is not None, "batch full: raise max_batch_size"
                delivered = await producer.send_batch(batch, topic, partition=partition)
                assert (await delivered).offset == offset
                produced.extend(records)
                offset += count
    finally:
        await producer.stop()
    return produced


async def _read_back(bootstrap: str, counts: dict[TopicPartition, int]) -> list[ArchivedRecord]:
    """Everything up to the known counts (never trust the broker's end offsets here)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10
    )
    await consumer.start()
    records: list[ArchivedRecord] = []
    try:
        consumer.assign(list(counts))
        await consumer.seek_to_beginning(*counts)
        deadline = time.monotonic() + DEADLINE_S
        while len(records) < sum(counts.values()):
            assert time.monotonic() < deadline, f"read {len(records)} of {counts}"
            for batch in (await consumer.getmany(timeout_ms=100)).values():
                records.extend(
                    ArchivedRecord(
                        r.topic, r.partition, r.offset, r.timestamp, r.key, r.value, r.headers
                    )
                    for r in batch
                )
    finally:
        await consumer.stop()
    return sorted(records, key=lambda r: (r.topic, r.partition, r.offset))


def _read_archive(path: Path) -> list[ArchivedRecord]:
    decoder = msgspec.json.Decoder(ArchivedRecord)
    return [decoder.decode(line) for line in path.read_bytes().splitlines()]


def _counts(records: list[ArchivedRecord]) -> dict[TopicPartition, int]:
    counts: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        counts[tp] = counts.get(tp, 0) + 1
    return counts


def _rewrite(
    source: Path, target: Path, change: Callable[[ArchivedRecord], ArchivedRecord]
) -> None:
    encoder = msgspec.json.Encoder()
    target.write_bytes(encoder.encode_lines([change(r) for r in _read_archive(source)]))


@pytest.fixture(scope="module")
async def exported(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """Given a topic of 3 partitions with 2,000 records each, exported once for the module."""
    topic = _topic("full")
    await _create_topics(broker.bootstrap, {topic: PARTITIONS})
    expected = await _produce(broker.bootstrap, topic, PER_PARTITION)
    path = tmp_path_factory.mktemp("archive") / "log.ndjson"
    progress: list[int] = []
    summary = await export_log(broker.kafka, [topic], path, on_progress=progress.append)
    assert summary.records == {topic: dict.fromkeys(range(PARTITIONS), PER_PARTITION)}
    return Exported(topic, path, expected, progress)


def test_given_a_topic_when_exported_then_every_record_is_archived_in_offset_order(
    exported: Exported,
) -> None:
    archived = _read_archive(exported.path)

    for partition in range(PARTITIONS):
        in_file = [r for r in archived if r.partition == partition]
        assert in_file == [r for r in exported.expected if r.partition == partition]
    assert len(archived) == PARTITIONS * PER_PARTITION
    assert exported.progress == sorted(exported.progress)
    assert exported.progress[-1] == PARTITIONS * PER_PARTITION


async def test_given_an_archive_when_imported_into_a_fresh_broker_then_records_are_identical(
    exported: Exported, tmp_path: Path
) -> None:
    async with EmbeddedBroker(log_path=tmp_path / "fresh.log") as fresh:
        await _create_topics(fresh.bootstrap, {exported.topic: PARTITIONS})

        progress: list[int] = []
        summary = await import_log(fresh.kafka, exported.path, on_progress=progress.append)

        assert summary.records == {exported.topic: dict.fromkeys(range(PARTITIONS), PER_PARTITION)}
        assert progress[-1] == summary.total == PARTITIONS * PER_PARTITION
        copied = await _read_back(fresh.bootstrap, _counts(exported.expected))
    assert copied == exported.expected


async def test_given_a_non_empty_target_partition_when_imported_then_nothing_is_published(
    broker: EmbeddedBroker, exported: Exported, tmp_path: Path
) -> None:
    topic = _topic("taken")
    await _create_topics(broker.bootstrap, {topic: PARTITIONS})
    archive = tmp_path / "renamed.ndjson"
    _rewrite(exported.path, archive, lambda r: msgspec.structs.replace(r, topic=topic))
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"already here", partition=2)
    finally:
        await producer.stop()

    with pytest.raises(ArchiveError, match=rf"{topic}\[2\] \(next offset 1\)"):
        await import_log(broker.kafka, archive)

    untouched = [TopicPartition(topic, p) for p in (0, 1)]
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
    await consumer.start()
    try:
        assert set((await consumer.end_offsets(untouched)).values()) == {0}
    finally:
        await consumer.stop()


async def test_given_an_archive_with_an_offset_gap_when_imported_then_it_is_refused(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    topic = _topic("gap")
    archive = tmp_path / "gap.ndjson"
    records = [_record(topic, 0, offset) for offset in (0, 1, 3)]
    archive.write_bytes(msgspec.json.Encoder().encode_lines(records))

    with pytest.raises(ArchiveError, match=rf"{topic}\[0\] has offset 3 where 2 was expected"):
        await import_log(broker.kafka, archive)


async def test_given_missing_topics_or_partitions_when_imported_then_it_is_refused(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    small, absent = _topic("small"), _topic("absent")
    await _create_topics(broker.bootstrap, {small: 1})
    too_wide, missing = tmp_path / "wide.ndjson", tmp_path / "missing.ndjson"
    encoder = msgspec.json.Encoder()
    too_wide.write_bytes(encoder.encode_lines([_record(small, 1, 0)]))
    missing.write_bytes(encoder.encode_lines([_record(absent, 0, 0)]))

    with pytest.raises(ArchiveError, match=rf"too few partitions for {small}\[1\]"):
        await import_log(broker.kafka, too_wide)
    with pytest.raises(ArchiveError, match=rf"topics do not exist: {absent}"):
        await import_log(broker.kafka, missing)
    with pytest.raises(ArchiveError, match="no archive at"):
        await import_log(broker.kafka, tmp_path / "never-written.ndjson")

    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        assert absent not in await admin.list_topics()  # checking did not create it
    finally:
        await admin.close()


async def test_given_an_empty_topic_when_exported_then_the_archive_is_empty_and_imports_nothing(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    topic = _topic("empty")
    await _create_topics(broker.bootstrap, {topic: 2})
    path = tmp_path / "empty.ndjson"

    exported = await export_log(broker.kafka, [topic], path)
    imported = await import_log(broker.kafka, path)

    assert exported.records == {topic: {0: 0, 1: 0}}
    assert path.read_bytes() == b""
    assert imported.total == 0


class Interrupted(Exception):
    pass


def _interrupt(count: int) -> None:
    raise Interrupted(f"stopped at {count} records")


async def test_given_an_old_archive_when_an_export_fails_then_the_old_archive_is_intact(
    broker: EmbeddedBroker, exported: Exported, tmp_path: Path
) -> None:
    path = tmp_path / "log.ndjson"
    path.write_bytes(b"the previous archive\n")
    nobody_listens = KafkaAccess(f"127.0.0.1:{free_port()}")

    async with asyncio.timeout(DEADLINE_S):
        with pytest.raises(ArchiveError, match="cannot export"):
            await export_log(nobody_listens, ["devreg.events"], path)
        with pytest.raises(ArchiveError, match="topics do not exist"):
            await export_log(broker.kafka, [_topic("absent")], path)
        # While writing: the first progress report comes before the file is complete.
        with pytest.raises(Interrupted):
            await export_log(broker.kafka, [exported.topic], path, on_progress=_interrupt)

    assert path.read_bytes() == b"the previous archive\n"
    assert os.listdir(tmp_path) == ["log.ndjson"]  # no temporary file left behind
