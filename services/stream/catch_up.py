"""Readiness means caught up: the stores have applied the log as it stood when the worker
started, for the partitions the worker owns, and their keys were read (a new device's request
would otherwise wait for that read: services/keys/keyring.py).

The log's end is taken from the broker's end offsets (right on Apache Kafka), except where
devreg knows it exactly: after `devreg run` re-publishes its archive into a fresh embedded
broker, the archive's record counts are the end. (The embedded broker under-reports end
offsets, docs/design.md §10; elsewhere on it they are only a lower bound.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping

from services.kafka.clients import Ends


class CatchUp:
    def __init__(
        self,
        ends: Ends,
        positions: Callable[[], Mapping[tuple[str, int], int]],
        keys_read: Callable[[int], bool] = lambda partition: True,
    ):
        self._ends = ends
        self._positions = positions
        self._keys_read = keys_read
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
        ) and (owned_set is None or all(self._keys_read(p) for p in owned_set))
        return self._reached


class Takeover:
    """Partitions this worker was just handed, not served until its projection has caught up
    with the log as it stood at the handover: until then a device request for one of them
    is answered 5902 (retry), never from rows another worker has moved past.

    The gate closes the moment the group's table names this worker as the owner (`assigned`,
    from the assignor, on the consumer's thread: hence the lock), with the end still unknown;
    the end is filled in once read from the broker (`handed`), or the gate opened if it cannot
    be (`ungated`). The end is the broker's end offset at the handover: exact on Apache Kafka;
    on the embedded broker a lower bound (docs/design.md §10), so there the gate may open a
    little early.
    """

    _UNKNOWN = 2**63  # the end of a partition handed over, until the broker has told it

    def __init__(self, events_topic: str, positions: Callable[[], Mapping[tuple[str, int], int]]):
        self._topic = events_topic
        self._positions = positions
        self._ends: dict[int, int] = {}  # partition -> events offset to reach
        self._owned: set[int] = set()
        self._lock = threading.Lock()

    def assigned(self, partitions: Iterable[int]) -> set[int]:
        """The partitions owned after a rebalance; returns those newly handed over, gated
        from now on until `handed` gives their ends. Those taken away are not gated."""
        now = set(partitions)
        with self._lock:
            handed, lost = now - self._owned, self._owned - now
            self._owned = now
            for partition in lost:
                self._ends.pop(partition, None)
            for partition in handed:
                self._ends[partition] = self._UNKNOWN
        return handed

    def waiting(self) -> set[int]:
        """Partitions handed over whose end is not known yet."""
        with self._lock:
            return {p for p, end in self._ends.items() if end == self._UNKNOWN}

    def handed(self, ends: Mapping[int, int]) -> None:
        with self._lock:
            self._ends.update({p: end for p, end in ends.items() if p in self._owned})

    def ungated(self, partitions: Iterable[int]) -> None:
        """Serve these without waiting (their ends could not be read)."""
        with self._lock:
            for partition in partitions:
                self._ends.pop(partition, None)

    def caught_up(self, partition: int) -> bool:
        end = self._ends.get(partition)
        if end is None:
            return True
        if self._positions().get((self._topic, partition), 0) < end:
            return False
        with self._lock:
            if self._ends.get(partition) == end:
                del self._ends[partition]  # caught up once: from now on it follows the log
        return True
