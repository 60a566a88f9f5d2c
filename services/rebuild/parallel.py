"""A rebuild's fold spread over processes, a set of partitions each, then merged into one file.

Why: one build is one core's work. Its loop (reading, decoding, folding) and aiosqlite's
thread (SQLite) take turns on the GIL, so a second thread does not help, and the fold cannot
be split across batches (each depends on the rows the one before wrote). It can be split
across partitions: every device's events are in one partition (docs/design.md §2). So this
process reads the log once and deals each batch's records out to children
(services/rebuild/part.py), one per set of partitions, each running the very same build into
a file of its own; the files are then merged (projections/merge.py). Figures in
docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import sys
import time
from pathlib import Path

import msgspec
from aiokafka import TopicPartition

from projections.fold import ProjectionError
from projections.merge import MergeError, merge_into
from projections.positions import Record
from services.log.reader import LogReader
from services.progress import Progress
from services.rebuild.build import (
    BATCH,
    Build,
    BuildReport,
    RebuildError,
    RecordFilter,
    Stops,
    remove_db,
)
from services.rebuild.part import PROJECTION_ERROR, frame

# Below this many events, one process: starting others costs about what sharing saves. At 100k
# events two processes were already faster here (1.54-1.67 s vs 1.98-2.02 s, three pairs).
PARALLEL_FROM = 50_000
_STDERR_TAIL = 20  # lines of a failed child's stderr quoted in the error
_QUEUED = 2  # frames waiting for a child: it reads the next while SQLite writes one


def available_cores() -> int:
    """The cores this process may run on (macOS has no affinity: all of them)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def processes_for(requested: int | None, events: int) -> int:
    """`requested` (None: one per core the process may use, for a log of PARALLEL_FROM events
    or more, else one)."""
    if requested is not None:
        return max(requested, 1)
    return available_cores() if events >= PARALLEL_FROM else 1


def split(events: dict[int, int], processes: int) -> list[list[int]]:
    """Partitions into at most `processes` sets of about as many events each: the largest
    partition first, each to the set with the fewest events so far."""
    sets: list[list[int]] = [[] for _ in range(min(processes, len(events)))]
    loads = [0] * len(sets)
    for partition in sorted(events, key=lambda p: (-events[p], p)):
        lightest = loads.index(min(loads))
        sets[lightest].append(partition)
        loads[lightest] += events[partition]
    return [sorted(s) for s in sets if s]


async def fold(
    path: Path,
    topic: str,
    reader: LogReader,
    progress: Progress,
    stops: Stops | None,
    processes: int | None = None,
    *,
    keep: RecordFilter | None = None,
    alone: bool = True,
) -> Build:
    """A fresh build of `path` folded up to `stops` (None: the end of the log) by `processes`
    processes (see processes_for); `keep` and `alone` as for Build. Nothing is left behind if
    it fails."""
    tps = await reader.partitions(topic)
    if stops is None:
        ends = {tp.partition: offset for tp, offset in (await reader.end_offsets(tps)).items()}
    else:
        ends = {tp.partition: stops.get(tp.partition, 0) for tp in tps}
    progress.total = sum(ends.values())
    sets = split(ends, processes_for(processes, progress.total))
    if len(sets) > 1:
        parts = _Parts(path, topic, sets, keep, alone)
        return await parts.fold(reader, tps, progress, stops)
    build = await Build.fresh(path, topic, progress, alone=alone)
    try:
        await build.extend(reader, stops, keep)
    except BaseException:
        await discard(build)
        raise
    return build


async def discard(build: Build) -> None:
    with contextlib.suppress(Exception):
        await build.store.close()
    remove_db(build.path)


class _Parts:
    """A fold spread over child processes, one per set of partitions, merged into `path`."""

    def __init__(
        self,
        path: Path,
        topic: str,
        sets: list[list[int]],
        keep: RecordFilter | None,
        alone: bool,
    ):
        self.path, self.topic, self.sets, self.keep, self.alone = path, topic, sets, keep, alone

    async def fold(
        self,
        reader: LogReader,
        tps: list[TopicPartition],
        progress: Progress,
        stops: Stops | None,
    ) -> Build:
        started = time.monotonic()
        remove_db(self.path)
        files = [self.path.with_name(f"{self.path.name}.part{i}") for i in range(len(self.sets))]
        children: list[_Part] = []
        try:
            for file, partitions in zip(files, self.sets, strict=True):
                children.append(await _Part.start(file, self.topic, partitions))
            await self._deal(reader, tps, stops, progress, children)
            reports = [await child.finish() for child in children]
            await asyncio.to_thread(merge_into, files[0], files[1:])
            os.replace(files[0], self.path)
        except MergeError as exc:
            raise RebuildError(f"merging the rebuilt partitions failed: {exc}") from exc
        finally:
            for child in children:
                await child.stop()
            for file in files:
                remove_db(file)
        try:
            return await Build.merged(
                self.path, self.topic, progress, reports, started, alone=self.alone
            )
        except BaseException:
            remove_db(self.path)
            raise

    async def _deal(
        self,
        reader: LogReader,
        tps: list[TopicPartition],
        stops: Stops | None,
        progress: Progress,
        children: list[_Part],
    ) -> None:
        """Read the log once and hand each child the records of its partitions: the embedded
        broker serves one reader well, but several concurrent readers of one topic stall it
        (measured: 2 readers of 3 partitions each, 1M events, stalls of 1-15 s with the broker
        spinning on both cores; one reader of all 6, none in 5 runs)."""
        owner = {p: child for child in children for p in child.partitions}
        starts = dict.fromkeys(tps, 0)
        limits = None if stops is None else {tp: stops.get(tp.partition, 0) for tp in tps}
        # A batch read gives each child about a build's batch: the transactions stay as large.
        async for batch in reader.read(starts, limits, max_records=BATCH * len(children)):
            progress.advance(len(batch))
            kept = self.keep(batch) if self.keep is not None else batch
            shares: dict[_Part, list[Record]] = {}
            for record in kept:
                shares.setdefault(owner[record.partition], []).append(record)
            for child, records in shares.items():
                await child.send(records)


class _Part:
    """A child process folding a set of partitions (services/rebuild/part.py), fed through a
    queue so that a child busy with SQLite does not hold up the reading for the others."""

    def __init__(self, process: asyncio.subprocess.Process, partitions: list[int]):
        self.process, self.partitions = process, partitions
        assert process.stdin is not None
        assert process.stderr is not None
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=_QUEUED)
        self._writer = asyncio.ensure_future(self._write(process.stdin))
        self._errors = asyncio.ensure_future(_tail(process.stderr))

    @classmethod
    async def start(cls, path: Path, topic: str, partitions: list[int]) -> _Part:
        pipe = asyncio.subprocess.PIPE
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.rebuild.part",
            str(path),
            topic,
            stdin=pipe,
            stdout=pipe,
            stderr=pipe,
        )
        return cls(process, partitions)

    async def _write(self, stdin: asyncio.StreamWriter) -> None:
        while (data := await self._queue.get()) is not None:
            stdin.write(data)
            await stdin.drain()
        stdin.close()
        await stdin.wait_closed()

    async def send(self, records: list[Record]) -> None:
        await self._put(frame(records))

    async def _put(self, data: bytes | None) -> None:
        """Queue `data` for the child, unless it has failed (then it is never read)."""
        put = asyncio.ensure_future(self._queue.put(data))
        await asyncio.wait([put, self._writer], return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()
        if self._writer.done() and data is not None:
            raise await self._failure()  # before the end, it can only have stopped on an error

    async def finish(self) -> BuildReport:
        """The child's report, once it has folded everything it was sent."""
        await self._put(None)
        with contextlib.suppress(OSError):
            await self._writer  # a child that failed broke the pipe: its status says why
        assert self.process.stdout is not None
        out = await self.process.stdout.read()
        if await self.process.wait() != 0:
            raise await self._failure()
        return msgspec.json.decode(out, type=BuildReport)

    async def _failure(self) -> Exception:
        """Why the child stopped: the log's fault (ProjectionError, as the fold in one process
        raises it) or the rebuild's."""
        status = await self.process.wait()
        said = await self._errors
        if status == PROJECTION_ERROR:
            return ProjectionError(f"partitions {self.partitions}: {said}")
        return RebuildError(
            f"the fold of partitions {self.partitions} failed (exit status {status}): {said}"
        )

    async def stop(self) -> None:
        """Whatever state it is in: gone, and nothing of it running."""
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        for task in (self._writer, self._errors):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


async def _tail(stream: asyncio.StreamReader) -> str:
    """The last lines a child wrote on stderr (read as it goes: a full pipe would block it)."""
    lines: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL)
    async for raw in stream:
        lines.append(raw.decode(errors="replace").rstrip())
    return "\n".join(lines)
