"""Export topics to an NDJSON archive; re-publish one, same offsets, into empty topics.

The embedded broker keeps its log in memory (docs/design.md §10): `make run` exports the topics on
a clean stop and imports them into the next, fresh broker. Records must keep their offsets (the
projections store offsets): import checks file and target first, and each batch's offset after.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from services.kafka import clients
from services.kafka.clients import KafkaAccess
from services.log.compaction import CompactingSpool

_PROGRESS_EVERY = 5_000
_IDLE_MS = 200  # drained: a window of many empty fetches, not one slow one, brought nothing
_STALL_S = 30.0  # nothing at all arrives although a partition is below its end offset
_IMPORT_CHUNK = 10_000  # records read, published and acknowledged at a time
_MAX_BATCH_BYTES = 512 * 1024  # imports twice as fast as with the 16 KiB default


class ArchiveError(RuntimeError):
    """An archive cannot be written, read or re-published faithfully."""


class ArchivedRecord(msgspec.Struct, frozen=True):
    """One Kafka record as archived; msgspec writes `bytes` as base64."""

    topic: str
    partition: int
    offset: int
    timestamp: int  # ms since epoch, as the broker returned it
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


class ExportSummary(msgspec.Struct, frozen=True):
    records: dict[str, dict[int, int]]  # topic -> partition -> records, empty ones included
    total: int


class ImportSummary(msgspec.Struct, frozen=True):
    records: dict[str, dict[int, int]]  # topic -> partition -> records re-published
    total: int


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(ArchivedRecord)


class _Progress:
    """Calls back with the running count every few thousand records, and once at the end."""

    def __init__(self, callback: Callable[[int], None] | None) -> None:
        self.callback, self.count = callback or (lambda _: None), 0

    def add(self, n: int) -> None:
        before, self.count = self.count, self.count + n
        if before // _PROGRESS_EVERY < self.count // _PROGRESS_EVERY:
            self.callback(self.count)


def _by_topic(counts: dict[TopicPartition, int]) -> dict[str, dict[int, int]]:
    result: dict[str, dict[int, int]] = {}
    for tp in sorted(counts):
        result.setdefault(tp.topic, {})[tp.partition] = counts[tp]
    return result


def _name(tp: TopicPartition) -> str:
    return f"{tp.topic}[{tp.partition}]"


def _partitions(consumer: AIOKafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    # From the all-topics metadata of start(): Tansu creates a missing topic asked for by name.
    found = {topic: consumer.partitions_for_topic(topic) for topic in sorted(set(topics))}
    missing = [topic for topic, partitions in found.items() if partitions is None]
    if missing:
        raise ArchiveError(f"topics do not exist: {', '.join(missing)}")
    return [TopicPartition(t, p) for t, partitions in found.items() for p in sorted(partitions)]


async def export_log(
    kafka: KafkaAccess,
    topics: Sequence[str],
    path: Path,
    on_progress: Callable[[int], None] | None = None,
    compacted: Sequence[str] = (),
) -> ExportSummary:
    """Write every record of `topics` to `path`; a failure leaves any previous file intact.

    `compacted` topics (the keys topic) are written as Kafka's compaction would leave them,
    offsets kept: a record whose key a later tombstone erased is written as a tombstone itself
    (key, no value). The embedded broker never compacts, so without this an erased data key
    would live on in every archive (docs/audit.md, "What an erasure leaves")."""
    progress = _Progress(on_progress)
    consumer = clients.consumer(kafka)
    try:
        await consumer.start()
        tps = _partitions(consumer, topics)
        erasing = [tp for tp in tps if tp.topic in compacted]
        plain = [tp for tp in tps if tp.topic not in compacted]
        with _replacing(path) as out:
            written = await _drain(consumer, plain, out, progress) if plain else {}
            if erasing:
                with tempfile.TemporaryFile() as spool:
                    held = CompactingSpool(spool)
                    written |= await _drain(consumer, erasing, held, progress)
                    held.copy_to(out)
    except KafkaError as exc:
        raise ArchiveError(
            f"cannot export {', '.join(topics)} from {kafka.bootstrap}: {exc!r}"
        ) from exc
    finally:
        await clients.stop_consumer(consumer)
    progress.callback(progress.count)
    return ExportSummary(_by_topic(written), progress.count)


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[IO[bytes]]:
    """A temporary file beside `path` that replaces it only once complete and on disk."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    # The rename itself must survive a power cut, or the old archive may come back.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


async def _drain(
    consumer: AIOKafkaConsumer,
    tps: list[TopicPartition],
    out: IO[bytes] | CompactingSpool,
    progress: _Progress,
) -> dict[TopicPartition, int]:
    ends = await clients.end_offsets(consumer, tps)
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    counts, pending, last_record = dict.fromkeys(tps, 0), set(tps), time.monotonic()
    while pending:
        fetched = await consumer.getmany(*pending, timeout_ms=_IDLE_MS)
        for tp, records in fetched.items():
            out.write(_ENCODER.encode_lines([_archived(r) for r in records]))
            counts[tp] += len(records)
            progress.add(len(records))
        if fetched:
            last_record = time.monotonic()
            continue
        # A whole window brought nothing for any pending partition: those at their end are done.
        pending = {tp for tp in pending if not await clients.at_end(consumer, tp, ends[tp])}
        if pending and time.monotonic() - last_record > _STALL_S:
            stuck = ", ".join(f"{_name(tp)} (end offset {ends[tp]})" for tp in sorted(pending))
            raise ArchiveError(f"no records for {_STALL_S:.0f}s below the end of {stuck}")
    return counts


def _archived(r: Any) -> ArchivedRecord:
    return ArchivedRecord(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value, r.headers)


async def import_log(
    kafka: KafkaAccess, path: Path, on_progress: Callable[[int], None] | None = None
) -> ImportSummary:
    """Re-publish an archive into existing, empty topics, each record at its archived offset."""
    # The whole file is checked first, so a bad line cannot leave the target half imported.
    layout = await asyncio.to_thread(_scan, path)
    if not layout:
        return ImportSummary({}, 0)
    progress = _Progress(on_progress)
    try:
        await _check_target(kafka, layout)
        await _publish(kafka, path, progress)
    except KafkaError as exc:
        raise ArchiveError(f"cannot import {path} into {kafka.bootstrap}: {exc!r}") from exc
    progress.callback(progress.count)
    return ImportSummary(_by_topic(layout), progress.count)


def _scan(path: Path) -> dict[TopicPartition, int]:
    """Records per partition; raises unless each partition's offsets run 0, 1, 2, ..."""
    if not path.is_file():
        raise ArchiveError(f"no archive at {path}")
    next_offset: dict[TopicPartition, int] = {}
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                record = _DECODER.decode(line)
            except msgspec.DecodeError as exc:
                raise ArchiveError(f"{path}:{number}: not an archived record: {exc}") from exc
            tp = TopicPartition(record.topic, record.partition)
            expected = next_offset.get(tp, 0)
            # A producer cannot choose offsets, so a gap (a transaction marker, say) is fatal.
            if record.offset != expected:
                raise ArchiveError(
                    f"{path}:{number}: {_name(tp)} has offset {record.offset} where {expected}"
                    " was expected; import needs offsets contiguous from 0"
                )
            next_offset[tp] = expected + 1
    return next_offset


async def _check_target(kafka: KafkaAccess, layout: dict[TopicPartition, int]) -> None:
    consumer = clients.consumer(kafka)
    try:
        await consumer.start()
        existing = set(_partitions(consumer, {tp.topic for tp in layout}))
        absent = [_name(tp) for tp in sorted(layout) if tp not in existing]
        if absent:
            raise ArchiveError(f"the target has too few partitions for {', '.join(absent)}")
        # A lower bound on Tansu, but never 0 for a partition that holds a record.
        ends = await clients.end_offsets(consumer, sorted(layout))
    finally:
        await clients.stop_consumer(consumer)
    full = [f"{_name(tp)} (next offset {n})" for tp, n in sorted(ends.items()) if n != 0]
    if full:
        raise ArchiveError(f"target partitions not empty, offsets would shift: {', '.join(full)}")


async def _publish(kafka: KafkaAccess, path: Path, progress: _Progress) -> None:
    producer = clients.producer(kafka, max_batch_size=_MAX_BATCH_BYTES)
    try:
        await producer.start()
        with path.open("rb") as lines:
            while chunk := await asyncio.to_thread(_read_chunk, lines):
                # Partitions in parallel; aiokafka keeps one batch of a partition in flight.
                sends = (_publish_partition(producer, tp, rs) for tp, rs in chunk.items())
                for result in await asyncio.gather(*sends, return_exceptions=True):
                    if isinstance(result, BaseException):
                        raise result
                progress.add(sum(len(records) for records in chunk.values()))
    finally:
        await producer.stop()


def _read_chunk(lines: IO[bytes]) -> dict[TopicPartition, list[ArchivedRecord]]:
    """The next records of the archive by partition, each partition's in offset order."""
    chunk: dict[TopicPartition, list[ArchivedRecord]] = {}
    for line in itertools.islice(lines, _IMPORT_CHUNK):
        record = _DECODER.decode(line)
        chunk.setdefault(TopicPartition(record.topic, record.partition), []).append(record)
    return chunk


async def _publish_partition(
    producer: AIOKafkaProducer, tp: TopicPartition, records: list[ArchivedRecord]
) -> None:
    acks: list[tuple[asyncio.Future[Any], int]] = []
    start = 0
    while start < len(records):
        batch = producer.create_batch()
        end = _fill(batch, records, start)
        delivered = await producer.send_batch(batch, tp.topic, partition=tp.partition)
        acks.append((delivered, records[start].offset))
        start = end
    for delivered, expected in acks:
        base: int = (await delivered).offset
        # Without idempotence a retried batch may be written twice; or someone else wrote.
        if base != expected:
            raise ArchiveError(f"{_name(tp)}: archived offset {expected} was written at {base}")


def _fill(batch: Any, records: list[ArchivedRecord], start: int) -> int:
    """Appends records from `start` until the batch is full; returns the first one left out."""
    for index in range(start, len(records)):
        r, headers = records[index], list(records[index].headers)  # the C builder wants a list
        # None means full; an empty batch always takes its first record, so this progresses.
        if batch.append(key=r.key, value=r.value, timestamp=r.timestamp, headers=headers) is None:
            return index
    return len(records)
