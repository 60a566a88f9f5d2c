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

from collections.abc import Mapping, Sequence

import msgspec

from projections.positions import Record
from services.kafka.clients import KafkaAccess
from services.log import highwater

TP = tuple[str, int]
_READ_DEADLINE_S = 10.0


async def written_by_others(
    kafka: KafkaAccess, topics: Sequence[str], placed: Mapping[TP, set[int]]
) -> dict[TP, list[Record]]:
    """Per partition of `topics`, the records at offsets restore did not write, in order."""

    def theirs(record: Record) -> bool:
        return record.offset not in placed.get((record.topic, record.partition), set())

    return await highwater.read_to_highwater(
        kafka, topics, lambda tp: 0, _READ_DEADLINE_S, keep=theirs
    )


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
