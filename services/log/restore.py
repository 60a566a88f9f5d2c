"""Putting the kept log (services/log/segments.py) back into an empty embedded broker.

The broker gets only a tail of each partition, at the same offsets as before: a first record
batch whose first record is the filler, the real record T - 1 at offset delta T - 1, which
moves the partition's high-water mark to T in one small write, followed by the records T ..
end in it and the batches after it. A fetch at
any offset below T answers the filler's record (docs/design.md §10), so T is never above
where a store of the worker resumes (`floors`): nothing the worker still has to read is left
out. Readers of older history read the segments (services/log/reader.py).

So a restart, or a rollover (services/log/rollover.py), costs the tail's size, not the log's:
the broker holds a few batch objects per partition, whatever the history's length.

Each batch must land where it belongs. Where one does not (someone else wrote to the fresh
partition first), restore raises ForeignWrites with where its own records did land, and the
renewal carries the others' records over to its next try (services/log/foreign.py).

A compacted topic's tail (the keys and tokens topics) is given as Kafka's compaction would
leave it (services/log/compaction.py): a record a later tombstone of the tail erased is given
as a tombstone, so the broker never holds a forgotten device's key again after a restart or
a renewal, even where the kept log's own compaction has not run yet. Where a store still has
to read a record (at or past its floor) it is given as written.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Iterator, Mapping, Sequence

import msgspec

from projections.positions import Record
from services.kafka.clients import KafkaAccess
from services.kafka.raw_produce import ProduceError, RawProducer, build_batch, chunks
from services.log import compaction
from services.log.segments import SegmentLog

TP = tuple[str, int]


class RestoreError(RuntimeError):
    """The broker's partitions could not be given the kept log's tail at its offsets."""


class ForeignWrites(RestoreError):
    """Someone else wrote to a fresh partition before its tail was given: the tail could not
    go at its offsets. `placed` names, per partition, the offsets where the records this
    restore wrote landed; every other record there is someone else's (services/log/foreign.py
    carries them over to the next try)."""

    def __init__(self, placed: Mapping[TP, set[int]], where: list[str]):
        super().__init__(f"someone else wrote first to a fresh partition: {'; '.join(where)}")
        self.placed = placed


class _Elsewhere(Exception):
    """A batch of the tail landed at another offset than its own, or was refused."""


class Restored(msgspec.Struct, frozen=True):
    starts: dict[str, dict[int, int]]  # topic -> partition -> T, the first offset the broker holds
    ends: dict[str, dict[int, int]]  # topic -> partition -> the log's end
    records: int  # records in the kept log
    written: int  # records written to the broker (tails and what was past the kept end)
    seconds: float

    def describe(self) -> str:
        per_topic = ", ".join(f"{t} {sum(p.values()):,}" for t, p in sorted(self.ends.items()))
        return (
            f"{self.records:,} records ({per_topic or 'none'}) in {self.seconds:.2f}s;"
            f" the broker was given the last {self.written:,}"
        )


def tail_start(end: int, tail: int, floor: int | None) -> int:
    """T: at most `tail` records below the end, and never above a reader's floor."""
    start = max(0, end - tail)
    return start if floor is None else max(0, min(start, floor))


class Tail:
    """What a partition is given: its batches in order, the first read from the kept log
    already, so that every partition's first write can follow the topics' creation at once
    (`prepare`, then `give`)."""

    def __init__(
        self, tp: TP, start: int, first: Sequence[Record] | None, rest: Iterator[Sequence[Record]]
    ):
        self.tp = tp
        self.start = start
        self.first = first
        # built here, not when sent: the first batches go out the moment the topics exist
        self.first_batch = build_batch(first, 0) if first else None
        self.rest = rest


class Plan:
    """Every partition's Tail, with what `Restored` reports."""

    def __init__(self, tails: list[Tail], segments: SegmentLog, began: float):
        self.tails = tails
        self.segments = segments
        self.began = began


def prepare(
    segments: SegmentLog,
    topics: Sequence[str],
    tail: int,
    floors: Mapping[TP, int],
    beyond: Mapping[TP, list[Record]] | None = None,
    compacted: Collection[str] = (),
) -> Plan:
    """Each partition's tail (and `beyond`: records the old broker held past the kept end, at
    their offsets), the tails of `compacted` topics compacted below each partition's floor
    (wholly where it has none)."""
    began = time.monotonic()
    beyond = beyond or {}
    ends = {tp: end for tp, end in segments.ends().items() if tp[0] in topics}
    for tp in beyond:
        ends.setdefault(tp, 0)
    tails = []
    for tp in sorted(ends):
        start = tail_start(ends[tp], tail, floors.get(tp))
        batches = _batches(
            segments,
            tp,
            start,
            ends[tp],
            beyond.get(tp, []),
            tp[0] in compacted,
            compaction.bound(floors.get(tp)),
        )
        tails.append(Tail(tp, start, next(batches, None), batches))
    return Plan(tails, segments, began)


async def give(raw: RawProducer, plan: Plan) -> Restored:
    """Write the plan into its topics, which must exist and be empty: every partition's first
    batch at once, then the rest. Raises ForeignWrites where a batch landed elsewhere."""
    placed: dict[TP, set[int]] = {t.tp: set() for t in plan.tails}
    written = {t.tp: 0 for t in plan.tails}

    async def first(t: Tail) -> None:
        if t.first is not None:
            # at base 0: the filler's record at T - 1, or the partition's first record
            await _give(raw, t.tp, t.first, 0, placed[t.tp], t.first_batch)
            written[t.tp] += len(t.first) - (1 if t.start > 0 else 0)

    async def rest(t: Tail) -> None:
        for batch in t.rest:
            await _give(raw, t.tp, batch, batch[0].offset, placed[t.tp])
            written[t.tp] += len(batch)

    # Every partition runs to its end or its failure, so that `placed` is whole.
    for step in (first, rest):
        results = await asyncio.gather(*(step(t) for t in plan.tails), return_exceptions=True)
        _raise_failures(results, [t.tp for t in plan.tails], placed)

    def nested(values: Mapping[TP, int]) -> dict[str, dict[int, int]]:
        out: dict[str, dict[int, int]] = {}
        for (topic, partition), value in sorted(values.items()):
            out.setdefault(topic, {})[partition] = value
        return out

    kept = {t.tp: plan.segments.end(*t.tp) for t in plan.tails}
    return Restored(
        nested({t.tp: t.start for t in plan.tails}),
        nested(kept),
        sum(kept.values()),
        sum(written.values()),
        time.monotonic() - plan.began,
    )


async def restore(
    kafka: KafkaAccess,
    segments: SegmentLog,
    topics: Sequence[str],
    tail: int,
    floors: Mapping[TP, int],
    beyond: Mapping[TP, list[Record]] | None = None,
    compacted: Collection[str] = (),
) -> Restored:
    """`prepare` and `give`, into `topics`, which must exist and be empty."""
    try:
        plan = prepare(segments, topics, tail, floors, beyond, compacted)
        async with RawProducer(kafka) as raw:
            return await give(raw, plan)
    except ProduceError as exc:
        raise RestoreError(str(exc)) from exc


def _raise_failures(
    results: Sequence[object], tps: Sequence[TP], placed: Mapping[TP, set[int]]
) -> None:
    """Raises the first failure, ForeignWrites where every failure was a batch landing
    elsewhere."""
    failures = [(tp, r) for tp, r in zip(tps, results, strict=True) if isinstance(r, BaseException)]
    others = [r for _, r in failures if not isinstance(r, _Elsewhere)]
    if others:
        if isinstance(others[0], ProduceError):
            raise RestoreError(str(others[0])) from others[0]
        raise others[0]
    if failures:
        raise ForeignWrites(placed, [str(r) for _, r in failures])


async def _give(
    raw: RawProducer,
    tp: TP,
    records: Sequence[Record],
    base: int,
    placed: set[int],
    built: bytes | None = None,
) -> None:
    """One batch (`built` from `records` already, or built here), each record meant for
    offset `record.offset - base` past where it lands; `placed` gets where they landed."""
    batch = built or build_batch(records, base)  # a record too large fails here, as itself
    try:
        landed = await raw.produce(tp[0], tp[1], batch)
    except ProduceError as exc:
        # Refused: in a fresh partition, where a write of someone else's raced the deletion
        # and left its object behind at this offset (Tansu 0.6, docs/design.md §10)
        raise _Elsewhere(str(exc)) from exc
    placed.update(r.offset - base + landed for r in records)
    if landed != base:
        raise _Elsewhere(f"{tp[0]}[{tp[1]}]: offset {base} was written at {landed}")


def _batches(
    segments: SegmentLog,
    tp: TP,
    start: int,
    end: int,
    beyond: list[Record],
    compact: bool,
    below: int | None,
) -> Iterator[Sequence[Record]]:
    """The filler (the real record T - 1), the tail T .. end and `beyond`, as they are given,
    in batches: the filler shares the first (each record sits at its own offset delta)."""
    topic, partition = tp
    filler = segments.record_at(topic, partition, start - 1) if start > 0 else None
    if start > 0 and filler is None:
        raise RestoreError(f"{topic}[{partition}]: the kept log has no record {start - 1}")

    def tail() -> Iterator[list[Record]]:
        if filler is not None:
            yield [filler]
        yield from segments.read(topic, partition, start, end, max_records=20_000)
        if beyond:
            yield beyond

    # A compacted topic's tail is read twice: for its tombstones, then to be given.
    erased: dict[bytes | None, int] = {}
    if compact:
        for run in tail():
            erased.update(compaction.tombstones(run))

    def given(records: list[Record]) -> list[Record]:
        return [compaction.compacted(r, erased, below) for r in records] if erased else records

    pending: list[Record] = []
    for run in tail():
        pending.extend(given(run))
        batches = chunks(pending)
        yield from batches[:-1]
        pending = list(batches[-1]) if batches else []
    if pending:
        yield pending
