"""The embedded mode's kept log against the real broker: a restored tail behind its filler,
and readers that read below the broker's start from the kept log (services/log/restore.py,
services/log/reader.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from projections.positions import Record
from services.kafka import clients
from services.kafka.clients import KafkaAccess
from services.log.broker import EmbeddedBroker
from services.log.reader import LogError, LogReader
from services.log.restore import restore
from services.log.segments import SegmentLog

END, TAIL = 500, 50


def records(topic: str, start: int, stop: int) -> list[Record]:
    return [
        Record(topic, 0, n, 1_700_000_000_000 + n, b"k%d" % n, b"v%d" % n, (("h", b"%d" % n),))
        for n in range(start, stop)
    ]


async def restored_topic(broker: EmbeddedBroker, kept: Path) -> str:
    """A new topic given the tail of a kept log of END records, behind a filler."""
    topic = f"kept-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    log = SegmentLog(kept)
    log.append(records(topic, 0, END))
    restored = await restore(broker.kafka, log, [topic], TAIL, {})
    log.close()
    assert restored.starts == {topic: {0: END - TAIL}}
    return topic


async def test_given_a_restored_tail_then_the_broker_answers_the_filler_below_it(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    # Given a broker given the last TAIL records of a kept log
    topic = await restored_topic(broker, tmp_path)

    # Then a plain consumer from 0 gets the filler's record (the real record T - 1) and the
    # tail, at their offsets, with their times and headers; the high-water mark is the end
    consumer = clients.consumer(broker.kafka)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        got: list[Record] = []
        while len(got) < TAIL + 1:
            fetched = await consumer.getmany(tp, timeout_ms=2000)
            assert fetched, "the broker answered nothing"
            got += [
                Record(r.topic, 0, r.offset, r.timestamp, r.key, r.value, tuple(r.headers))
                for r in fetched[tp]
            ]
        assert got == records(topic, END - TAIL - 1, END)
        assert consumer.highwater(tp) == END
    finally:
        await clients.stop_consumer(consumer)

    # and a reader with the kept log reads every record, in order
    access = KafkaAccess(broker.bootstrap, kept_log=str(tmp_path))
    async with LogReader(access) as reader:
        read = [r async for batch in reader.read({TopicPartition(topic, 0): 0}) for r in batch]
    assert read == records(topic, 0, END)


async def test_given_a_fetch_that_jumps_then_the_reader_fills_it_from_the_kept_log(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    # Given a broker restored from one kept log, and a reader whose kept log had only the
    # first 300 records when it looked (the writer appends the rest while it reads)
    topic = await restored_topic(broker, tmp_path / "full")
    partial = SegmentLog(tmp_path / "partial")
    partial.append(records(topic, 0, 300))
    access = KafkaAccess(broker.bootstrap, kept_log=str(tmp_path / "partial"))
    async with LogReader(access) as reader:
        batches = reader.read({TopicPartition(topic, 0): 0}, max_records=300)
        first = await anext(batches)
        assert first == records(topic, 0, 300)
        partial.append(records(topic, 300, END))

        # When the broker answers from its filler (offset T - 1), past the reader's position
        rest = [r async for batch in batches for r in batch]

    # Then the records in between come from the kept log: nothing skipped
    assert rest == records(topic, 300, END)
    partial.close()


async def test_given_a_jump_the_kept_log_cannot_fill_then_the_read_fails(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    topic = await restored_topic(broker, tmp_path / "full")
    partial = SegmentLog(tmp_path / "partial")
    partial.append(records(topic, 0, 300))
    partial.close()
    access = KafkaAccess(broker.bootstrap, kept_log=str(tmp_path / "partial"))
    async with LogReader(access) as reader:
        with pytest.raises(LogError, match="neither on the broker nor in the kept log"):
            async for _ in reader.read({TopicPartition(topic, 0): 0}):
                pass


async def test_given_a_compacted_topic_then_its_tail_is_given_compacted_below_the_floor(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    # Given a kept keys-like partition not compacted on disk yet: the filler's record and
    # two tail records erased by later tombstones, one of them past a reader's floor
    topic = f"keys-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    kept = [
        *records(topic, 0, 10),
        Record(topic, 0, 10, 1, b"k3", None),  # erases the filler's record (T - 1 = 3)
        Record(topic, 0, 11, 2, b"k6", None),
        Record(topic, 0, 12, 3, b"k8", None),  # past the floor: k8 is given as written
    ]
    log = SegmentLog(tmp_path)
    log.append(kept)

    # When the broker is given the tail from T = 4, its reader's floor at 8 (a store that
    # has read up to 8 is checked against record 7)
    await restore(broker.kafka, log, [topic], 9, {(topic, 0): 8}, compacted=[topic])
    log.close()

    # Then what a tombstone erased below the floor is given as a tombstone at its offset,
    # the filler included; the rest as it was
    async with LogReader(KafkaAccess(broker.bootstrap)) as reader:
        given = [r async for batch in reader.read({TopicPartition(topic, 0): 0}) for r in batch]
    assert [(r.offset, r.key, r.value) for r in given] == [
        (3, b"k3", None),
        *((n, b"k%d" % n, b"v%d" % n) for n in (4, 5)),
        (6, b"k6", None),
        *((n, b"k%d" % n, b"v%d" % n) for n in (7, 8, 9)),
        (10, b"k3", None),
        (11, b"k6", None),
        (12, b"k8", None),
    ]
