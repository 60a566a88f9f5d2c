"""Someone else's records in a fresh partition before its tail was given (a Kafka publisher
writing through a renewal: services/log/foreign.py), against the real broker: the tail
cannot go at its offsets, restore says so and where its own records landed, and the next
try gives the tail at its offsets with the publisher's records after it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from projections.positions import Record
from services.kafka.raw_produce import RawProducer
from services.log import foreign, highwater
from services.log.broker import EmbeddedBroker
from services.log.restore import ForeignWrites, give, prepare
from services.log.segments import SegmentLog

END, TAIL = 300, 40
THEIRS = [b"theirs-1", b"theirs-2"]


def kept(topic: str) -> list[Record]:
    return [Record(topic, 0, n, 1_700_000_000_000 + n, b"k%d" % n, b"v%d" % n) for n in range(END)]


async def made(broker: EmbeddedBroker, topic: str, again: bool = False) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        if again:
            await admin.delete_topics([topic])
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()


async def publish(broker: EmbeddedBroker, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:
        for value in THEIRS:
            await producer.send_and_wait(topic, value, key=b"publisher", partition=0)
    finally:
        await producer.stop()


async def everything(broker: EmbeddedBroker, topic: str) -> list[Record]:
    found = await highwater.read_to_highwater(broker.kafka, [topic], lambda tp: 0, 20)
    return found[(topic, 0)]


async def test_given_a_publisher_first_in_a_fresh_partition_then_its_records_follow_the_tail(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    # Given a kept log of END records and a fresh topic a publisher wrote to first
    topic = f"fresh-{uuid.uuid4().hex[:8]}"
    log = SegmentLog(tmp_path)
    log.append(kept(topic))
    await made(broker, topic)
    await publish(broker, topic)

    # When its tail is given
    async with RawProducer(broker.kafka) as raw:
        with pytest.raises(ForeignWrites) as raised:
            await give(raw, prepare(log, [topic], TAIL, {}))

        # Then restore says so, and the records it did not place are the publisher's
        others = await foreign.written_by_others(broker.kafka, [topic], raised.value.placed)
        assert [r.value for r in others[(topic, 0)]] == THEIRS

        # And when the topic is made again and given the tail with them carried over, the
        # tail is at its offsets behind its filler, and theirs follow at END, END + 1
        beyond = foreign.carried_over({}, others, log.ends())
        await made(broker, topic, again=True)
        restored = await give(raw, prepare(log, [topic], TAIL, {}, beyond))
    log.close()
    assert restored.written == TAIL + len(THEIRS)
    got = await everything(broker, topic)
    assert [(r.offset, r.value) for r in got] == [
        (r.offset, r.value) for r in kept(topic)[END - TAIL - 1 :]
    ] + [(END + n, value) for n, value in enumerate(THEIRS)]
