"""Test helpers on the log's side: commands published straight to Kafka, and a topic read
from the start."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from events import AnyCommand, AnyEvent, RegisterDevice, decode_event, encode
from events.identity import partition_key
from tests.support import PARTITIONS

T = TypeVar("T")


async def publish_commands(
    bootstrap: str, topic: str, commands: Iterable[AnyCommand], partitions: int = PARTITIONS
) -> None:
    """Commands straight to a commands topic, keyed as devreg keys them and each on the
    partition Kafka's default partitioner picks for its key (the one devreg checks), in as few
    `send_batch` calls as fit; returns once Kafka acknowledged them all."""
    every = list(range(partitions))
    partitioner = DefaultPartitioner()
    by_partition: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in every}
    for command in commands:
        key = partition_key(command.app_id, command.device_id)
        by_partition[partitioner(key, every, every)].append((key, encode(command)))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        acks = []
        for partition, records in by_partition.items():
            batch = producer.create_batch()
            for key, value in records:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    acks.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            acks.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


def keyed_registration(app_id: str, device: str) -> tuple[bytes, bytes]:
    """A publisher's RegisterDevice for `device` (command id `c-<device>`), as a Kafka record's
    key and value, keyed as devreg keys them."""
    register = RegisterDevice(
        command_id=f"c-{device}",
        app_id=app_id,
        device_id=device,
        device_token=f"tok-{device}",
        os="IOS",
        os_version="17",
        channels=("news",),
    )
    return partition_key(app_id, device), encode(register)


Raw = ConsumerRecord[bytes, bytes]


async def read_from_start(
    bootstrap: str,
    topic: str,
    decode: Callable[[Raw], T],
    until: Callable[[list[T]], bool],
    deadline_s: float,
    drain: bool,
) -> list[T]:
    """Every record of `topic` from offset 0, each decoded once, until `until(decoded)` holds;
    with `drain`, on until a fetch comes back empty, so that what already sits after it (a
    duplicate, say) is read too.

    End offsets are never asked for (Tansu under-reports them, docs/design.md §10): the caller
    names what it waits for, and the read fails at the deadline if that has not come.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20
    )
    await consumer.start()
    try:
        await consumer.topics()  # all-topics metadata: naming a topic would create it on Tansu
        partitions = consumer.partitions_for_topic(topic)
        assert partitions, f"topic {topic} does not exist"
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        found: list[T] = []
        end = time.monotonic() + deadline_s
        while True:
            satisfied = until(found)
            overdue = time.monotonic() > end
            if satisfied and (overdue or not drain):
                return found
            if overdue:
                raise AssertionError(f"read {len(found)} records of {topic} in {deadline_s}s")
            batches = await consumer.getmany(timeout_ms=200)
            records = [r for batch in batches.values() for r in batch]
            found.extend(decode(r) for r in records)
            if satisfied and not records:
                return found
    finally:
        # aiokafka 0.14 can raise CancelledError if stop() runs before start()'s own task.
        await asyncio.sleep(0)
        await consumer.stop()


def as_is(record: Raw) -> Raw:
    return record


def as_event(record: Raw) -> AnyEvent:
    assert record.value is not None, f"a record without a value at {record.offset}"
    return decode_event(record.value)


async def read_topic(
    bootstrap: str, topic: str, until: Callable[[list[Raw]], bool], deadline_s: float = 20.0
) -> list[Raw]:
    """The records of `topic` from the start, up to the fetch where `until(records)` holds."""
    return await read_from_start(bootstrap, topic, as_is, until, deadline_s, drain=False)


async def read_records(bootstrap: str, topic: str, enough: int, deadline_s: float) -> list[Raw]:
    """At least `enough` records of `topic` from the start, and any that already sit after."""

    def counted(records: list[Raw]) -> bool:
        return len(records) >= enough

    return await read_from_start(bootstrap, topic, as_is, counted, deadline_s, drain=True)


async def read_events(
    bootstrap: str,
    topic: str,
    done: Callable[[list[AnyEvent]], bool],
    deadline_s: float = 20.0,
) -> list[AnyEvent]:
    """The events of `topic` from the start, until `done(events)` holds, and any that already
    sit after (a test that counts expiries sees a duplicate)."""
    return await read_from_start(bootstrap, topic, as_event, done, deadline_s, drain=True)
