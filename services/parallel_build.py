"""A rebuild's fold spread over processes, a set of partitions each, then merged into one file.

Why: one build is one core's work. Its loop (reading, decoding, folding) and aiosqlite's
thread (SQLite) take turns on the GIL, so a second thread does not help, and the fold cannot
be split across batches (each depends on the rows the one before wrote). It can be split
across partitions: every device's events are in one partition (DESIGN.md §2). So each child
(services/build_part.py) runs the very same build on its partitions into its own file, and
the files are merged (projections/merge.py): 1M events on 2 cores, ~15 s in one process,
~7.5 s for the two halves at once, then ~1.7 s to merge and index (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import sys
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import msgspec

from projections.merge import MergeError, merge_into
from services.build import Build, BuildReport, RebuildError, Stops, remove_db
from services.build_part import PartLine
from services.log_reader import LogReader
from services.progress import Progress

# Below this many events, starting processes (~0.5 s each) costs more than sharing saves.
PARALLEL_FROM = 100_000
_STDERR_TAIL = 20  # lines of a failed child's stderr quoted in the error


def available_cores() -> int:
    return len(os.sched_getaffinity(0))


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
    bootstrap: str,
    reader: LogReader,
    progress: Progress,
    stops: Stops | None,
    processes: int | None = None,
) -> Build:
    """A fresh build of `path`, alone, folded up to `stops` (None: the end of the log) by
    `processes` processes (see processes_for). Nothing is left behind if it fails."""
    tps = await reader.partitions(topic)
    if stops is None:
        ends = {tp.partition: offset for tp, offset in (await reader.end_offsets(tps)).items()}
    else:
        ends = {tp.partition: stops.get(tp.partition, 0) for tp in tps}
    progress.total = sum(ends.values())
    sets = split(ends, processes_for(processes, progress.total))
    if len(sets) > 1:
        return await _fold_in_parts(path, topic, bootstrap, progress, stops, sets)
    build = await Build.fresh(path, topic, progress, alone=True)
    try:
        await build.extend(reader, stops)
    except BaseException:
        await discard(build)
        raise
    return build


async def discard(build: Build) -> None:
    with contextlib.suppress(Exception):
        await build.store.close()
    remove_db(build.path)


async def _fold_in_parts(
    path: Path,
    topic: str,
    bootstrap: str,
    progress: Progress,
    stops: Stops | None,
    sets: list[list[int]],
) -> Build:
    started = time.monotonic()
    remove_db(path)
    parts = [path.with_name(f"{path.name}.part{i}") for i in range(len(sets))]
    try:
        runs = [
            _run_part(part, topic, bootstrap, partitions, stops, progress)
            for part, partitions in zip(parts, sets, strict=True)
        ]
        reports = await _all_or_none(runs)
        await asyncio.to_thread(merge_into, parts[0], parts[1:])
        os.replace(parts[0], path)
    except MergeError as exc:
        raise RebuildError(f"merging the rebuilt partitions failed: {exc}") from exc
    finally:
        for part in parts:
            remove_db(part)
    try:
        return await Build.merged(path, topic, progress, reports, started)
    except BaseException:
        remove_db(path)
        raise


async def _all_or_none(runs: Sequence[Coroutine[Any, Any, BuildReport]]) -> list[BuildReport]:
    """Every child's report; the first failure stops the other children and is raised."""
    tasks = [asyncio.ensure_future(run) for run in runs]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _run_part(
    part: Path,
    topic: str,
    bootstrap: str,
    partitions: list[int],
    stops: Stops | None,
    progress: Progress,
) -> BuildReport:
    args = [str(part), topic, bootstrap, ",".join(map(str, partitions))]
    if stops is not None:
        own = {p: stops.get(p, 0) for p in partitions}
        args += ["--stops", msgspec.json.encode(own).decode()]
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.build_part",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    assert child.stderr is not None
    errors = asyncio.ensure_future(_tail(child.stderr))
    try:
        report: BuildReport | None = None
        async for raw in child.stdout:
            line = msgspec.json.decode(raw, type=PartLine)
            progress.advance(line.events)
            report = line.report or report
        status = await child.wait()
        said = await errors
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        errors.cancel()
    if status != 0 or report is None:
        raise RebuildError(
            f"the fold of partitions {partitions} failed (exit status {status}): {said}"
        )
    return report


async def _tail(stream: asyncio.StreamReader) -> str:
    """The last lines a child wrote on stderr (read as it goes: a full pipe would block it)."""
    lines: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL)
    async for raw in stream:
        lines.append(raw.decode(errors="replace").rstrip())
    return "\n".join(lines)
