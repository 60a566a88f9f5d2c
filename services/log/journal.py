"""The embedded mode's durable log: what the command processor keeps before it commits.

The processor hands every record of a decided batch here once Kafka acknowledged it: the
commands it consumed (headers included), the events, the outcomes, the dead letters, the
sealed copies of raw commands and the token claims, each at the offset Kafka gave it. They are
appended to the segments (services/log/segments.py), and only then are the decisions and the
projection committed. So after a crash the stores never claim more than the segments hold,
and everything a user was told succeeded (a POST answers after the commit) is in them.

A partition of the segments must stay contiguous. Records devreg did not write itself (an
event someone else published, say) leave a gap before devreg's next record there, and so do
commands not decided yet before a sealed copy the processor sent behind them: the gap is read
from the broker, which still holds it, and appended first.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection

from aiokafka import TopicPartition

from projections.positions import Record
from services.kafka import clients
from services.kafka.clients import KafkaAccess
from services.log.reader import as_record
from services.log.segments import SegmentGap, SegmentLog

_BACKFILL_DEADLINE_S = 10.0
# Rounds of appending and filling gaps per batch: a partition's records open a gap where
# another writer's records lie before them; each round fills every partition's first one.
_MAX_ROUNDS = 8


# What the worker's writers are handed in the embedded mode (None on Apache Kafka, whose log
# is durable itself): `Journal.keep`, awaited once Kafka acknowledged the records and before
# anything that depends on them is committed or answered.
Keep = Callable[[list[Record]], Awaitable[None]]


class JournalError(RuntimeError):
    """Records cannot be kept: the batch must not be committed."""


class Journal:
    def __init__(self, segments: SegmentLog, kafka: KafkaAccess, compacted: Collection[str] = ()):
        self.segments = segments
        self._kafka = kafka
        self._compacted = frozenset(compacted)
        # Records kept per partition since the broker was last given a fresh tail: an upper
        # bound on the batch objects it holds there (services/log/rollover.py). `own_since_restore`
        # leaves out what was read back to fill a gap: a backlog someone published in bulk
        # sits in the broker in large batches, whatever its length.
        self.since_restore: dict[tuple[str, int], int] = {}
        self.own_since_restore: dict[tuple[str, int], int] = {}
        # Partitions of compacted topics where a tombstone was kept since the kept log was
        # last compacted there (services/log/kept_compaction.py).
        self.erasing: set[tuple[str, int]] = set()

    def restored(self) -> None:
        self.since_restore.clear()
        self.own_since_restore.clear()

    async def keep(self, records: list[Record]) -> None:
        """Append `records` at their offsets; what lies between a segment's end and a record
        of the batch (records someone else wrote, or commands not decided yet before a sealed
        copy the processor sent) is read from the broker and appended first."""
        self.erasing.update(
            (r.topic, r.partition)
            for r in records
            if r.value is None and r.topic in self._compacted
        )
        for _ in range(_MAX_ROUNDS):
            appended, gaps = self.segments.append_continuing(records)
            self._count(appended, own=True)
            if not gaps:
                return
            missing = await self._backfill(gaps)
            appended, still = self.segments.append_continuing(missing)
            self._count(appended, own=False)
            if still:
                raise JournalError(f"{still[0]}: the broker's records do not fill it")
        raise JournalError("records cannot be kept: gaps keep opening in the segments")

    def _count(self, appended: dict[tuple[str, int], int], own: bool) -> None:
        for key, n in appended.items():
            if n:
                self.since_restore[key] = self.since_restore.get(key, 0) + n
                if own:
                    self.own_since_restore[key] = self.own_since_restore.get(key, 0) + n

    async def _backfill(self, gaps: list[SegmentGap]) -> list[Record]:
        """The records gap.end .. gap.first - 1 of each gap, read from the broker."""
        wanted = {TopicPartition(g.topic, g.partition): (g.end, g.first) for g in gaps}
        consumer = clients.consumer(self._kafka)
        found: dict[TopicPartition, list[Record]] = {tp: [] for tp in wanted}
        await consumer.start()
        try:
            consumer.assign(list(wanted))
            for tp, (end, _) in wanted.items():
                consumer.seek(tp, end)
            pending = set(wanted)
            deadline = time.monotonic() + _BACKFILL_DEADLINE_S
            while pending and time.monotonic() < deadline:
                fetched = await consumer.getmany(*pending, timeout_ms=200)
                for tp, records in fetched.items():
                    end, first = wanted[tp]
                    got = found[tp]
                    for r in records:
                        if end + len(got) == r.offset < first:
                            got.append(as_record(r))
                    if end + len(got) >= first:
                        pending.discard(tp)
        finally:
            await clients.stop_consumer(consumer)
        for tp, (end, first) in wanted.items():
            if len(found[tp]) != first - end:
                raise JournalError(
                    f"{tp.topic}[{tp.partition}] {end}..{first - 1}: the broker did not give"
                    " the missing records"
                )
        return [r for records in found.values() for r in records]
