"""Token records kept back during an expiry burst go out later, in batch order
(services/stream/token_lane.py), against a producer that holds its acknowledgements."""

from __future__ import annotations

import asyncio

import pytest

from services.stream.token_lane import TokenLane
from tests.processor_rig import HeldProducer

TOPIC = "tokens"


async def test_given_batches_kept_back_then_sent_in_their_order_and_each_gets_its_own() -> None:
    producer = HeldProducer()
    lane = TokenLane(producer, TOPIC)  # type: ignore[arg-type]

    # Given two batches' records kept back, across two partitions
    first = lane.defer([(0, b"k1", b"release-1"), (1, b"k2", None)])
    second = lane.defer([(0, b"k3", b"claim-3")])
    assert lane.queued
    assert producer.sent == []

    # When the lane is flushed
    await lane.flush()

    # Then they were sent, in each partition, in the order the batches were decided
    assert not lane.queued
    assert [(r.partition, r.key, r.value) for r in producer.sent if r.partition == 0] == [
        (0, b"k1", b"release-1"),
        (0, b"k3", b"claim-3"),
    ]
    assert [(r.partition, r.key, r.value) for r in producer.sent if r.partition == 1] == [
        (1, b"k2", None)
    ]
    assert not first.done()

    # And once Kafka acknowledges, each batch gets its own records as the log holds them;
    # the record batches are counted once
    producer.release()
    one, two = await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert [(r.partition, r.offset, r.value) for r in one.records] == [
        (0, 0, b"release-1"),
        (1, 0, None),
    ]
    assert [(r.partition, r.offset, r.value) for r in two.records] == [(0, 1, b"claim-3")]
    assert one.batches == {(TOPIC, 0): 1, (TOPIC, 1): 1}
    assert two.batches == {}


class FailingProducer(HeldProducer):
    async def send_batch(self, batch: object, topic: str, *, partition: int) -> object:
        raise ConnectionError("the broker went away")


async def test_given_a_send_that_fails_then_every_batch_kept_back_fails_with_it() -> None:
    lane = TokenLane(FailingProducer(), TOPIC)  # type: ignore[arg-type]
    first = lane.defer([(0, b"k1", b"v")])
    with pytest.raises(ConnectionError):
        await lane.flush()
    with pytest.raises(ConnectionError):
        await first
