"""Reading the broker's partitions of some topics from given offsets up to their high-water
marks, with a deadline: what a renewal reads past the kept log, and what others wrote to the
fresh partitions (services/log/remake.py, foreign.py). The high-water mark of the last fetch
response is the end: the embedded broker's ListOffsets under-reports it (docs/design.md §10)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from aiokafka import TopicPartition

from projections.positions import Record
from services.kafka import clients
from services.kafka.clients import KafkaAccess
from services.log.reader import as_record

TP = tuple[str, int]


class Unread(RuntimeError):
    """Partitions not read to their end by the deadline."""


class TooMany(Exception):
    """More records than the caller's limit."""


async def read_to_highwater(
    kafka: KafkaAccess,
    topics: Sequence[str],
    start: Callable[[TP], int],
    deadline_s: float,
    keep: Callable[[Record], bool] = lambda record: True,
    limit: int | None = None,
) -> dict[TP, list[Record]]:
    """Per partition of `topics` that holds any, the records `keep` keeps, in order, from
    `start(tp)` up to the high-water mark; raises TooMany past `limit` records read and
    Unread past the deadline."""
    consumer = clients.consumer(kafka)
    found: dict[TP, list[Record]] = {}
    read = 0
    await consumer.start()
    try:
        await consumer.topics()  # all topics: asking for one by name would create it
        tps = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start((tp.topic, tp.partition)))
        pending, deadline = set(tps), time.monotonic() + deadline_s
        while pending:
            if time.monotonic() > deadline:
                raise Unread(f"not read to their end within {deadline_s:.0f}s: {pending}")
            fetched = await consumer.getmany(*pending, timeout_ms=50)
            read += sum(map(len, fetched.values()))
            if limit is not None and read > limit:
                raise TooMany()
            for tp, records in fetched.items():
                kept = [r for r in map(as_record, records) if keep(r)]
                found.setdefault((tp.topic, tp.partition), []).extend(kept)
            for tp in list(pending):
                highwater = consumer.highwater(tp)
                if highwater is not None and await consumer.position(tp) >= highwater:
                    pending.discard(tp)
    finally:
        await clients.stop_consumer(consumer)
    return {tp: records for tp, records in found.items() if records}
