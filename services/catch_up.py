"""Readiness means caught up: the stores have applied the log as it stood when the worker
started, for the partitions the worker owns.

The log's end is taken from the broker's end offsets (right on Apache Kafka), except where
devreg knows it exactly: after `devreg run` re-publishes its archive into a fresh embedded
broker, the archive's record counts are the end. (The embedded broker under-reports end
offsets, DESIGN.md §10; elsewhere on it they are only a lower bound.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition

Ends = dict[tuple[str, int], int]


async def log_ends(bootstrap: str, topics: Mapping[str, int]) -> Ends:
    """End offsets of every partition of `topics` (name → partition count)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t, n in topics.items() for p in range(n)]
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}


class CatchUp:
    def __init__(self, ends: Ends, positions: Callable[[], Mapping[tuple[str, int], int]]):
        self._ends = ends
        self._positions = positions
        self._reached = False

    def reached(self, owned: Iterable[int] | None) -> bool:
        """True once every owned partition's stores reached the start-up end (then for good)."""
        if self._reached:
            return True
        owned_set = None if owned is None else set(owned)
        if owned_set == set():
            # Before the first assignment (or mid-rebalance) there is nothing to compare:
            # `all()` of nothing would latch readiness before any partition caught up.
            return False
        positions = self._positions()
        self._reached = all(
            positions.get(key, 0) >= end
            for key, end in self._ends.items()
            if owned_set is None or key[1] in owned_set
        )
        return self._reached
