"""Reading a topic from the beginning with a plain aiokafka consumer.

End offsets are never asked for: the embedded broker under-reports them (docs/design.md §10).
The reader is told how many records (or which ones) it waits for, and stops there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

# True: seen enough; None: read to the end (until fetches come back empty)
OnRecords = Callable[[list[ConsumerRecord[bytes, bytes]]], bool | None]
IDLE_FETCHES = 5  # empty fetches in a row (100 ms each) that mean "the end", for None


async def read_topic(bootstrap: str, topic: str, on_records: OnRecords, deadline_s: float) -> float:
    """Feed every record of `topic`, from offset 0, to `on_records` until it answers True
    (or, when it answers None, until the topic has nothing more to give).

    Returns the seconds from the first fetch to the last one; raises TimeoutError."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    try:
        await consumer.topics()  # all-topics metadata: naming one topic would create it
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            raise RuntimeError(f"topic {topic} does not exist")
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        started = time.perf_counter()
        end = started + deadline_s
        idle = 0
        while time.perf_counter() < end:
            batches = await consumer.getmany(timeout_ms=100, max_records=100_000)
            records = [record for batch in batches.values() for record in batch]
            idle = 0 if records else idle + 1
            enough = on_records(records)
            if enough or (enough is None and idle >= IDLE_FETCHES):
                return time.perf_counter() - started
        raise TimeoutError(f"did not see what was expected on {topic} in {deadline_s}s")
    finally:
        await asyncio.sleep(0)  # aiokafka 0.14: stop() right after start() can raise
        await consumer.stop()


async def consume_count(bootstrap: str, topic: str, count: int, deadline_s: float) -> float:
    """The baseline consumer: read `count` records and nothing else; return the seconds."""
    seen = 0

    def on_records(records: list[ConsumerRecord[bytes, bytes]]) -> bool:
        nonlocal seen
        seen += len(records)
        return seen >= count

    return await read_topic(bootstrap, topic, on_records, deadline_s)
