"""Reading devreg's topics with a plain aiokafka consumer: no group, no faust, no commits.

replay, history, as-of, rebuild, verify and export all read through this. In the embedded
mode the broker holds only a tail of each partition (services/log/restore.py): what lies
below the kept log's end is read from the kept log (services/log/segments.py), the rest from
the broker; a fetch that jumps ahead (a rollover moved the broker's start past the position)
is filled in from the kept log too. End offsets are never
trusted for correctness (the embedded broker under-reports them, docs/design.md §10): a read "to
the end" stops only when a whole idle window brings nothing and the position has reached at
least the reported end; a read "to positions" stops at offsets it was given, such as a
projection's kafka_offsets.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Iterator, Mapping
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from projections.positions import Record
from services.kafka import clients
from services.kafka.clients import KafkaAccess
from services.log.segments import SegmentLog

FETCH_MAX_WAIT_MS = 10  # Tansu holds every fetch this long, even when data is there
IDLE_MS = 200  # drained: a window of many empty fetches, not one slow one, brought nothing
STALL_S = 30.0  # nothing at all arrives although a partition is below where it must reach
MAX_RECORDS = 5000  # records per batch handed on: one projection transaction


class LogError(RuntimeError):
    """The log cannot be read as asked (a missing topic, a partition that stalls)."""


def as_record(r: Any) -> Record:
    """An aiokafka ConsumerRecord as devreg's Record (headers included)."""
    return Record(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value, tuple(r.headers))


class LogReader:
    """`async with LogReader(kafka) as log:` then `log.read(...)` batches of Records."""

    def __init__(self, kafka: KafkaAccess):
        self._bootstrap = kafka.bootstrap
        self._kept = SegmentLog(Path(kafka.kept_log), readonly=True) if kafka.kept_log else None
        self._consumer = clients.consumer(
            kafka,
            # Larger fetches than the 1 MiB default: a rebuild reads ~20% faster.
            max_partition_fetch_bytes=8 << 20,
            fetch_max_bytes=64 << 20,
        )

    async def __aenter__(self) -> LogReader:
        try:
            await self._consumer.start()
        except KafkaError as exc:
            await self._stop()
            raise LogError(f"cannot reach the broker at {self._bootstrap}: {exc!r}") from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stop()

    async def _stop(self) -> None:
        await clients.stop_consumer(self._consumer)
        if self._kept is not None:
            self._kept.close()

    @property
    def consumer(self) -> AIOKafkaConsumer:
        return self._consumer

    async def partitions(self, topic: str) -> list[TopicPartition]:
        # All-topics metadata: asking Tansu about one topic by name would create it.
        await self._consumer.topics()
        found = self._consumer.partitions_for_topic(topic)
        if found is None:
            raise LogError(f"topic {topic} does not exist (is DEVREG_TOPIC_PREFIX right?)")
        return [TopicPartition(topic, p) for p in sorted(found)]

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """What the broker reports: a lower bound on the embedded broker."""
        return await clients.end_offsets(self._consumer, tps)

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        starts: dict[TopicPartition, int] = await self._consumer.beginning_offsets(tps)
        return starts

    async def read(
        self,
        starts: Mapping[TopicPartition, int],
        stops: Mapping[TopicPartition, int] | None = None,
        follow: bool = False,
        max_records: int = MAX_RECORDS,
    ) -> AsyncGenerator[list[Record], None]:
        """Batches of records from `starts`: up to `stops` (exclusive) if given, else to the
        end of the log, or on and on with `follow`."""
        starts = dict(starts)
        if self._kept is not None:
            for tp, start in starts.items():
                stop = None if stops is None else stops.get(tp, 0)
                for batch in self._from_kept(tp, start, stop, max_records):
                    starts[tp] = batch[-1].offset + 1
                    yield batch
        async for batch in self._read_broker(starts, stops, follow, max_records):
            yield batch

    def _from_kept(
        self, tp: TopicPartition, start: int, stop: int | None, max_records: int
    ) -> Iterator[list[Record]]:
        """The kept log's records from `start` up to its end (or `stop`)."""
        assert self._kept is not None
        segment = self._kept.segment(tp.topic, tp.partition)
        segment.refresh()
        end = segment.end if stop is None else min(stop, segment.end)
        if start < end:
            yield from segment.read(start, end, max_records)

    async def _read_broker(
        self,
        starts: Mapping[TopicPartition, int],
        stops: Mapping[TopicPartition, int] | None,
        follow: bool,
        max_records: int,
    ) -> AsyncGenerator[list[Record], None]:
        consumer = self._consumer
        consumer.assign(list(starts))
        consumer.resume(*starts)  # a partition paused by an earlier read of this reader
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        pending = {tp for tp in starts if stops is None or starts[tp] < stops.get(tp, 0)}
        for tp in set(starts) - pending:
            consumer.pause(tp)
        ends = await self.end_offsets(sorted(pending)) if stops is None and not follow else {}
        expected = dict(starts)
        last_record = time.monotonic()
        while pending:
            fetched = await consumer.getmany(*pending, timeout_ms=IDLE_MS, max_records=max_records)
            batch: list[Record] = []
            for tp, records in fetched.items():
                stop = stops.get(tp, 0) if stops is not None else None
                if records and records[0].offset > expected[tp]:
                    batch.extend(self._jumped(tp, expected[tp], records[0].offset))
                batch.extend(as_record(r) for r in records if stop is None or r.offset < stop)
                if records:
                    expected[tp] = records[-1].offset + 1
                if stop is not None and records and records[-1].offset + 1 >= stop:
                    pending.discard(tp)
                    consumer.pause(tp)
            if fetched:
                last_record = time.monotonic()
            if batch:
                yield batch
                continue
            if follow:
                continue
            if stops is None:
                pending = {tp for tp in pending if not await self._at_end(tp, ends[tp])}
            if pending and time.monotonic() - last_record > STALL_S:
                where = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(pending))
                raise LogError(f"no records for {STALL_S:.0f}s below the end of {where}")

    def _jumped(self, tp: TopicPartition, expected: int, got: int) -> list[Record]:
        """The broker skipped `expected` .. `got` - 1. Where the kept log holds the partition
        (the embedded mode) the broker no longer holds them: they are read from the kept log,
        or the read fails (a reader never silently skips a record). Elsewhere a skip is the
        broker's own (transaction markers, compaction) and nothing is missing."""
        if self._kept is None or not self._kept.segment(tp.topic, tp.partition).path.exists():
            return []
        missing = [r for b in self._from_kept(tp, expected, got, MAX_RECORDS) for r in b]
        if len(missing) != got - expected:
            raise LogError(
                f"{tp.topic}[{tp.partition}]: offsets {expected}..{got - 1} are neither on the"
                " broker nor in the kept log"
            )
        return missing

    async def offsets_for_time(
        self, tps: list[TopicPartition], ts: int
    ) -> tuple[dict[TopicPartition, int], list[TopicPartition]]:
        """Where the records stamped at or after `ts` begin, from the broker's time index when
        its answer checks out against the records themselves; else from the partition's
        beginning (a scan: the embedded broker's answers are wrong, docs/design.md §10). Returns
        the start offsets and the partitions that are scanned."""
        beginnings = await self.beginning_offsets(tps)
        try:
            answers: dict[TopicPartition, Any] = await self._consumer.offsets_for_times(
                dict.fromkeys(tps, ts)
            )
        except KafkaError:
            answers = {}
        ends = await self.end_offsets(tps)
        starts: dict[TopicPartition, int] = {}
        to_check: dict[TopicPartition, tuple[int, int]] = {}
        for tp in tps:
            answer = answers.get(tp, "missing")
            if answer is None:  # nothing stamped at or after ts: start at the end
                starts[tp] = ends[tp]
            elif answer != "missing" and answer.timestamp >= ts:
                to_check[tp] = (answer.offset, answer.timestamp)
        checked = await self._first_records(
            {tp: max(offset - 1, beginnings[tp]) for tp, (offset, _) in to_check.items()}
        )
        for tp, (offset, stamp) in to_check.items():
            records = {r.offset: r.timestamp for r in checked.get(tp, [])}
            before_ok = offset <= beginnings[tp] or records.get(offset - 1, ts) < ts
            if records.get(offset) == stamp and before_ok:
                starts[tp] = offset
        scanned = [tp for tp in tps if tp not in starts]
        starts.update({tp: beginnings[tp] for tp in scanned})
        return starts, scanned

    async def _first_records(
        self, starts: dict[TopicPartition, int], want: int = 2, deadline_s: float = 5.0
    ) -> dict[TopicPartition, list[Record]]:
        """The first `want` records from each start (fewer at the end of a partition)."""
        found: dict[TopicPartition, list[Record]] = {tp: [] for tp in starts}
        if not starts:
            return found
        self._consumer.assign(list(starts))
        for tp, offset in starts.items():
            self._consumer.seek(tp, offset)
        pending, end = set(starts), time.monotonic() + deadline_s
        while pending and time.monotonic() < end:
            fetched = await self._consumer.getmany(*pending, timeout_ms=IDLE_MS)
            if not fetched:
                break
            for tp, records in fetched.items():
                found[tp].extend(as_record(r) for r in records[: want - len(found[tp])])
                if len(found[tp]) >= want:
                    pending.discard(tp)
        return found

    async def _at_end(self, tp: TopicPartition, end: int) -> bool:
        return await clients.at_end(self._consumer, tp, end)
