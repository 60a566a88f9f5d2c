"""The embedded mode's durable log: what the command processor keeps before it commits.

The processor hands every record of a decided batch here once Kafka acknowledged it: the
commands it consumed (headers included), the events, the outcomes and the dead letters, each
at the offset Kafka gave it. They are appended to the segments (services/log/segments.py),
and only then are the decisions and the projection committed. So after a crash the stores
never claim more than the segments hold, and everything a user was told succeeded (a POST
answers after the commit) is in them.

A partition of the segments must stay contiguous. Records devreg did not write itself (an
event someone else published, say) leave a gap before devreg's next record there: the gap is
read from the broker, which still holds it, and appended first.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from aiokafka import TopicPartition

from projections.positions import Record
from services.kafka import clients
from services.kafka.clients import KafkaAccess
from services.log.segments import SegmentGap, SegmentLog

_BACKFILL_DEADLINE_S = 10.0


class JournalError(RuntimeError):
    """Records cannot be kept: the batch must not be committed."""


class Journal:
    def __init__(self, segments: SegmentLog, kafka: KafkaAccess):
        self.segments = segments
        self._kafka = kafka
        # Records kept per partition since the broker was last given a fresh tail: an upper
        # bound on the batch objects it holds there (services/log/rollover.py).
        self.since_restore: dict[tuple[str, int], int] = {}

    def restored(self) -> None:
        self.since_restore.clear()

    async def keep(self, records: list[Record]) -> None:
        for _ in range(3):
            try:
                self._count(records, self.segments.append(records))
                return
            except SegmentGap as gap:
                missing = await self._backfill(gap)
                self._count(missing, self.segments.append(missing))
        raise JournalError("records cannot be kept: gaps keep opening in the segments")

    def _count(self, records: Iterable[Record], appended: int) -> None:
        if not appended:
            return
        for record in records:
            key = (record.topic, record.partition)
            self.since_restore[key] = self.since_restore.get(key, 0) + 1

    async def _backfill(self, gap: SegmentGap) -> list[Record]:
        """The records gap.end .. gap.first - 1, read from the broker."""
        tp = TopicPartition(gap.topic, gap.partition)
        consumer = clients.consumer(self._kafka)
        found: list[Record] = []
        await consumer.start()
        try:
            consumer.assign([tp])
            consumer.seek(tp, gap.end)
            deadline = time.monotonic() + _BACKFILL_DEADLINE_S
            while (not found or found[-1].offset + 1 < gap.first) and time.monotonic() < deadline:
                fetched = await consumer.getmany(tp, timeout_ms=200)
                for r in fetched.get(tp, []):
                    if gap.end + len(found) == r.offset < gap.first:
                        found.append(
                            Record(
                                r.topic,
                                r.partition,
                                r.offset,
                                r.timestamp,
                                r.key,
                                r.value,
                                tuple(r.headers),
                            )
                        )
        finally:
            await clients.stop_consumer(consumer)
        if len(found) != gap.first - gap.end:
            raise JournalError(f"{gap}: the broker did not give the missing records")
        return found
