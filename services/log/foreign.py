"""Records someone else wrote to a fresh partition of the embedded broker before devreg gave
it its tail (a renewal, services/log/rollover.py).

A Kafka publisher does not stop for a renewal. Once devreg's topics are created again, its
next send can land in a partition before the kept log's tail is given back there, at the
offsets the tail needs: the tail cannot go where it belongs. The broker acknowledged the
publisher's record, so it must not be lost either. So the renewal reads every record of the
fresh partitions that its own restore did not write (restore says where its records
landed: `ForeignWrites.placed`), makes the topics again, and gives those records back after
the tail and what the old broker held past the kept log, in the order they were written.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import msgspec
from aiokafka import TopicPartition

from projections.positions import Record
from services.kafka import clients
from services.kafka.clients import KafkaAccess
from services.log.reader import as_record

TP = tuple[str, int]
_READ_DEADLINE_S = 10.0


class UnreadError(RuntimeError):
    """The fresh partitions could not be read to their end."""


async def written_by_others(
    kafka: KafkaAccess, topics: Sequence[str], placed: Mapping[TP, set[int]]
) -> dict[TP, list[Record]]:
    """Per partition of `topics`, the records at offsets restore did not write, in order."""
    consumer = clients.consumer(kafka)
    found: dict[TP, list[Record]] = {}
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
            consumer.seek(tp, 0)
        pending, deadline = set(tps), time.monotonic() + _READ_DEADLINE_S
        while pending:
            if time.monotonic() > deadline:
                raise UnreadError(f"could not read the fresh partitions to their end: {pending}")
            fetched = await consumer.getmany(*pending, timeout_ms=50)
            for tp, records in fetched.items():
                mine = placed.get((tp.topic, tp.partition), set())
                others = [as_record(r) for r in records if r.offset not in mine]
                found.setdefault((tp.topic, tp.partition), []).extend(others)
            for tp in list(pending):
                highwater = consumer.highwater(tp)
                if highwater is not None and await consumer.position(tp) >= highwater:
                    pending.discard(tp)
    finally:
        await clients.stop_consumer(consumer)
    return {tp: records for tp, records in found.items() if records}


def carried_over(
    beyond: Mapping[TP, list[Record]],
    others: Mapping[TP, list[Record]],
    kept_ends: Mapping[TP, int],
) -> dict[TP, list[Record]]:
    """`beyond` (records past the kept log, at their offsets) with `others` appended to each
    partition's, at the offsets that follow."""
    out = {tp: list(records) for tp, records in beyond.items()}
    for tp, records in others.items():
        run = out.setdefault(tp, [])
        nxt = run[-1].offset + 1 if run else kept_ends.get(tp, 0)
        run.extend(msgspec.structs.replace(r, offset=nxt + n) for n, r in enumerate(records))
    return out
