"""Readiness means caught up: the stores have applied the log as it stood when the worker
started, for the partitions the worker owns.

The log's end is taken from the broker's end offsets (right on Apache Kafka), except where
devreg knows it exactly: after `devreg run` re-publishes its archive into a fresh embedded
broker, the archive's record counts are the end. (The embedded broker under-reports end
offsets, docs/design.md §10; elsewhere on it they are only a lower bound.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from services.kafka.clients import Ends


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


class Takeover:
    """Partitions this worker was just handed, not served until its projection has caught up
    with the log as it stood at the handover: until then a device request for one of them
    is answered 5902 (retry), never from rows another worker has moved past.

    The end is the broker's end offset at the handover: exact on Apache Kafka; on the
    embedded broker a lower bound (docs/design.md §10), so there the gate may open a little early.
    """

    def __init__(self, events_topic: str, positions: Callable[[], Mapping[tuple[str, int], int]]):
        self._topic = events_topic
        self._positions = positions
        self._ends: dict[int, int] = {}  # partition -> events offset to reach
        self._owned: set[int] = set()

    def assigned(self, partitions: Iterable[int]) -> set[int]:
        """The partitions owned after a rebalance; returns those newly handed over (gate
        them with `handed` once their ends are known). Those taken away are not gated."""
        now = set(partitions)
        handed, lost = now - self._owned, self._owned - now
        self._owned = now
        for partition in lost:
            self._ends.pop(partition, None)
        return handed

    def handed(self, ends: Mapping[int, int]) -> None:
        self._ends.update(ends)

    def caught_up(self, partition: int) -> bool:
        end = self._ends.get(partition)
        if end is None:
            return True
        if self._positions().get((self._topic, partition), 0) < end:
            return False
        del self._ends[partition]  # caught up once: from now on it follows the log live
        return True
