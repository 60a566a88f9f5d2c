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
from collections.abc import Collection, Mapping
from typing import Protocol

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


TP = tuple[str, int]


class Keep(Protocol):
    """What the worker's writers are handed in the embedded mode (None on Apache Kafka, whose
    log is durable itself): `Journal.keep`, awaited once Kafka acknowledged the records and
    before anything that depends on them is committed or answered. `batches`: how many record
    batches the writer sent per partition, where it sent them as batches of its own."""

    async def __call__(
        self, records: list[Record], batches: Mapping[TP, int] | None = None
    ) -> None: ...


class JournalError(RuntimeError):
    """Records cannot be kept: the batch must not be committed."""


class Journal:
    def __init__(self, segments: SegmentLog, kafka: KafkaAccess, compacted: Collection[str] = ()):
        self.segments = segments
        self._kafka = kafka
        self._compacted = frozenset(compacted)
        # Records kept per partition since the broker was last given a fresh tail: an upper
        # bound on the batch objects it holds there (services/log/rollover.py).
        self.since_restore: dict[TP, int] = {}
        # A closer bound on the objects devreg itself wrote there since: a writer's own record
        # batches count once each, and what was read back to fill a gap not at all (a backlog
        # someone published in bulk sits in the broker in large batches, whatever its length).
        self.objects_since_restore: dict[TP, int] = {}
        # Partitions of compacted topics where a tombstone was kept since the kept log was
        # last compacted there (services/log/kept_compaction.py).
        self.erasing: set[tuple[str, int]] = set()

    def restored(self) -> None:
        self.since_restore.clear()
        self.objects_since_restore.clear()

    async def keep(self, records: list[Record], batches: Mapping[TP, int] | None = None) -> None:
        """Append `records` at their offsets; what lies between a segment's end and a record
        of the batch (records someone else wrote, or commands not decided yet before a sealed
        copy the processor sent) is read from the broker and appended first. `batches`: the
        record batches the records were sent in, per partition (Keep)."""
        self.erasing.update(
            (r.topic, r.partition)
            for r in records
            if r.value is None and r.topic in self._compacted
        )
        for _ in range(_MAX_ROUNDS):
            appended, gaps = self.segments.append_continuing(records)
            self._count(appended, batches or {})
            if not gaps:
                return
            missing = await self._backfill(gaps)
            appended, still = self.segments.append_continuing(missing)
            self._count(appended, None)
            if still:
                raise JournalError(f"{still[0]}: the broker's records do not fill it")
        raise JournalError("records cannot be kept: gaps keep opening in the segments")

    def _count(self, appended: dict[TP, int], batches: Mapping[TP, int] | None) -> None:
        """`batches` None: records read back to fill a gap (not devreg's own objects)."""
        for key, n in appended.items():
            if n:
                self.since_restore[key] = self.since_restore.get(key, 0) + n
                if batches is not None:
                    objects = min(n, batches.get(key, n))
                    self.objects_since_restore[key] = (
                        self.objects_since_restore.get(key, 0) + objects
                    )

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
