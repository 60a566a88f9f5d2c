"""Putting the kept log (services/log/segments.py) back into an empty embedded broker.

The broker gets only a tail of each partition, at the same offsets as before: first a filler,
one record batch holding the real record T - 1 at offset delta T - 1, which moves the
partition's high-water mark to T in one small write; then the records T .. end. A fetch at
any offset below T answers the filler's record (docs/design.md §10), so T is never above
where a store of the worker resumes (`floors`): nothing the worker still has to read is left
out. Readers of older history read the segments (services/log/reader.py).

So a restart, or a rollover (services/log/rollover.py), costs the tail's size, not the log's:
the broker holds a few batch objects per partition, whatever the history's length.

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
from services.kafka.raw_produce import ProduceError, RawProducer, build_batch
from services.log import compaction
from services.log.segments import SegmentLog

TP = tuple[str, int]


class RestoreError(RuntimeError):
    """The broker's partitions could not be given the kept log's tail at its offsets."""


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


async def restore(
    kafka: KafkaAccess,
    segments: SegmentLog,
    topics: Sequence[str],
    tail: int,
    floors: Mapping[TP, int],
    beyond: Mapping[TP, list[Record]] | None = None,
    compacted: Collection[str] = (),
) -> Restored:
    """Write each partition's tail (and `beyond`: records the old broker held past the kept
    end, at their offsets) into `topics`, which must exist and be empty; the tails of
    `compacted` topics compacted below each partition's floor (wholly where it has none)."""
    began = time.monotonic()
    beyond = beyond or {}
    ends = {tp: end for tp, end in segments.ends().items() if tp[0] in topics}
    for tp in beyond:
        ends.setdefault(tp, 0)
    starts = {tp: tail_start(end, tail, floors.get(tp)) for tp, end in ends.items()}
    try:
        async with RawProducer(kafka) as raw:
            counts = await asyncio.gather(
                *(
                    _restore_partition(
                        raw,
                        segments,
                        tp,
                        starts[tp],
                        ends[tp],
                        beyond.get(tp, []),
                        tp[0] in compacted,
                        compaction.bound(floors.get(tp)),
                    )
                    for tp in sorted(ends)
                )
            )
    except ProduceError as exc:
        raise RestoreError(str(exc)) from exc

    def nested(values: Mapping[TP, int]) -> dict[str, dict[int, int]]:
        out: dict[str, dict[int, int]] = {}
        for (topic, partition), value in sorted(values.items()):
            out.setdefault(topic, {})[partition] = value
        return out

    kept = {tp: segments.end(*tp) for tp in ends}
    return Restored(
        nested(starts),
        nested(kept),
        sum(kept.values()),
        sum(counts),
        time.monotonic() - began,
    )


async def _restore_partition(
    raw: RawProducer,
    segments: SegmentLog,
    tp: TP,
    start: int,
    end: int,
    beyond: list[Record],
    compact: bool,
    below: int | None,
) -> int:
    topic, partition = tp
    filler = segments.record_at(topic, partition, start - 1) if start > 0 else None
    if start > 0 and filler is None:
        raise RestoreError(f"{topic}[{partition}]: the kept log has no record {start - 1}")

    def tail() -> Iterator[list[Record]]:
        yield from segments.read(topic, partition, start, end, max_records=20_000)
        if beyond:
            yield beyond

    # A compacted topic's tail is read twice: for its tombstones, then to be given.
    erased: dict[bytes | None, int] = {}
    if compact:
        for run in ([filler] if filler else [], *tail()):
            erased.update(compaction.tombstones(run))

    def given(records: list[Record]) -> list[Record]:
        return [compaction.compacted(r, erased, below) for r in records] if erased else records

    if filler is not None:
        base = await raw.produce(topic, partition, build_batch(given([filler]), 0))
        if base != 0:
            raise RestoreError(f"{topic}[{partition}] was not empty: the filler landed at {base}")
    written = 0
    for records in tail():
        await raw.produce_at(topic, partition, given(records))
        written += len(records)
    return written
