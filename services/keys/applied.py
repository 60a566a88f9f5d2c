"""How far the key store has applied the keys topic, per partition: the position it may
claim, so that `devreg run` reads on from there at the next start instead of from 0.

Only in the embedded mode, where this worker alone writes the keys topic and the kept log
never drops a tombstone (docs/design.md §10). A position claims that every record below it
has its effect in the key store. The keyring's own writes reach the store at different
moments: a new key is stored before it is published, so its offset is applied once the
topic acknowledged it; a tombstone is published first and its key deleted after, so its
offset is applied only once that delete committed. Until then the position stops at the
tombstone, whatever was acknowledged behind it: read on from past it after a crash, the
erased key would come back. An offset never reported here (a publish that failed halfway)
stops the position for the rest of the run; the next start reads on from there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from projections.positions import Position, Record, fingerprint

log = logging.getLogger(__name__)
# Offsets held past a partition's position while it cannot advance; beyond this the
# partition's position stays where it is for the rest of the run.
MAX_AHEAD = 100_000


class AppliedOffsets:
    def __init__(self, topic: str):
        self._topic = topic
        self._next: dict[int, Position] = {}  # every offset below it applied
        self._ahead: dict[int, dict[int, str]] = {}  # applied past it: offset -> fingerprint
        self._stuck: set[int] = set()

    def read_to(self, position: Position) -> None:
        """A read of the topic applied everything below `position` (services/keys/reads.py)."""
        held = self._next.get(position.partition)
        if held is None or position.next_offset > held.next_offset:
            self._next[position.partition] = position
            self._advance(position.partition)

    def applied(self, records: Iterable[Record]) -> None:
        """Records whose effect the key store now holds."""
        for partition, offsets in self._by_partition(records).items():
            if partition in self._stuck:
                continue
            ahead = self._ahead.setdefault(partition, {})
            ahead.update(offsets)
            self._advance(partition)
            if len(ahead) > MAX_AHEAD:
                log.warning(
                    "%s[%d]: the key store's position stays at %d for this run (an offset"
                    " was never acknowledged); the next start reads on from there",
                    self._topic,
                    partition,
                    self._next[partition].next_offset if partition in self._next else 0,
                )
                self._stuck.add(partition)
                del self._ahead[partition]

    def positions(self, also: Iterable[Record] = ()) -> list[Position]:
        """Where each partition's position may be, counting `also` as applied: an erasure
        writes it in the transaction that deletes the keys its tombstones erased."""
        extra = self._by_partition(also)
        reached = [
            self._reach(p, self._ahead.get(p, {}), extra.get(p, {}))
            for p in sorted(self._next)
            if p not in self._stuck
        ]
        return [position for position in reached if position.next_offset > 0]

    def _by_partition(self, records: Iterable[Record]) -> dict[int, dict[int, str]]:
        found: dict[int, dict[int, str]] = {}
        for r in records:
            if r.topic == self._topic:
                found.setdefault(r.partition, {})[r.offset] = fingerprint(r.key, r.value)
        return found

    def _advance(self, partition: int) -> None:
        if partition in self._next:
            ahead = self._ahead.get(partition, {})
            self._next[partition] = self._reach(partition, ahead, {})
            start = self._next[partition].next_offset
            for offset in [o for o in ahead if o < start]:
                del ahead[offset]

    def _reach(self, partition: int, ahead: dict[int, str], extra: dict[int, str]) -> Position:
        """The partition's position with `ahead` and `extra` applied: up to the first offset
        that is in neither."""
        position = self._next[partition]
        at, mark = position.next_offset, position.fingerprint
        while True:
            found = ahead.get(at, extra.get(at))
            if found is None:
                return Position(self._topic, partition, at, mark)
            at, mark = at + 1, found
