"""`devreg rebuild`: a projection folded afresh from the log (services/rebuild/build.py, over
several processes when the log is large: services/rebuild/parallel.py), swapped in for the live
one.

Online (a worker serves the live file), the rebuilt file is swapped in through the handshake
of projections/swap.py. Offline (no worker), it simply replaces the live file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from pathlib import Path

import msgspec

from projections.swap_files import (
    READY_TIMEOUT_S,
    SwapFiles,
    SwapMessage,
    fsync_dir,
    new_id,
    now_ms,
    stored_positions,
)
from services.kafka.clients import KafkaAccess
from services.log.reader import LogReader
from services.progress import Progress
from services.rebuild import parallel as parallel_build
from services.rebuild.build import Build, BuildReport, RebuildError, Stops, remove_db

CATCH_UP_ROUNDS = 3  # folds to the live positions before asking: the last pause is then short


def live_stops(live: Path, topic: str) -> Stops:
    """The live file's positions on the events topic: where a comparable rebuild stops."""
    try:
        positions = stored_positions(live)
    except sqlite3.Error as exc:
        raise RebuildError(f"cannot read the positions of {live}: {exc}") from exc
    return {p.partition: p.next_offset for p in positions if p.topic == topic}


async def rebuild_offline(
    live: Path, topic: str, kafka: KafkaAccess, progress: Progress, processes: int | None = None
) -> BuildReport:
    """Fold the whole log into a new file, then replace the live one (no worker may run).
    `processes`: see services/rebuild/parallel.py processes_for."""
    files = SwapFiles(live)
    _take_offline(live)  # fails fast if a worker has it; checked again before the rename
    async with LogReader(kafka) as reader:
        build = await parallel_build.fold(files.candidate, topic, reader, progress, None, processes)
    try:
        await build.close()
        _take_offline(live)
        os.replace(files.candidate, live)
        fsync_dir(live.parent)
    except BaseException:
        await parallel_build.discard(build)
        raise
    return msgspec.structs.replace(build.report(), mode="offline")


def _take_offline(live: Path) -> None:
    """Leaving WAL mode needs the only connection to the file: it fails if a worker has it."""
    if not live.exists():
        return
    try:
        with contextlib.closing(sqlite3.connect(live, timeout=0.5)) as db:
            mode = db.execute("PRAGMA journal_mode=DELETE").fetchone()
    except sqlite3.OperationalError as exc:
        raise RebuildError(
            f"{live} is in use ({exc}): a worker is running; run `devreg rebuild` without"
            " --offline to swap the rebuilt file in under it"
        ) from exc
    except sqlite3.DatabaseError:
        return  # not a sound database: exactly what a rebuild replaces
    if not mode or mode[0] != "delete":
        raise RebuildError(f"{live} is in use: a worker is running")


async def rebuild_online(
    live: Path,
    topic: str,
    kafka: KafkaAccess,
    progress: Progress,
    wait_s: float,
    processes: int | None = None,
) -> BuildReport:
    """Fold up to the live file's positions, then have the worker swap the new file in."""
    files = _require_live(live)
    files.clear(files.request, files.paused, files.ready, files.done)
    request = SwapMessage(id=new_id(), at_ms=now_ms(), candidate=str(files.candidate))
    build: Build | None = None
    try:
        async with LogReader(kafka) as reader:
            build = await parallel_build.fold(
                files.candidate,
                topic,
                reader,
                progress,
                live_stops(live, topic),
                processes,
            )
            for _ in range(CATCH_UP_ROUNDS):
                target = live_stops(live, topic)
                if target == build.positions():
                    break
                await build.extend(reader, target)
            files.write(files.request, request)
            paused = await _answer(files, files.paused, request.id, wait_s)
            if paused is None:
                raise RebuildError(
                    f"no worker answered within {wait_s:.0f}s; if none is running, use --offline"
                )
            held = {p.partition: p.next_offset for p in paused.positions if p.topic == topic}
            await build.extend(reader, held)
        await build.close()
        files.write(files.ready, SwapMessage(id=request.id, at_ms=now_ms()))
        done = await _answer(files, files.done, request.id, READY_TIMEOUT_S + 10)
    except BaseException:
        files.clear(files.request)
        if build is not None:
            await parallel_build.discard(build)
        raise
    files.clear(files.done)
    if done is None or not done.ok:
        remove_db(files.candidate)
        raise RebuildError(f"the worker did not swap: {done.error if done else 'no answer'}")
    report = build.report()
    return msgspec.structs.replace(report, mode="online", paused_ms=done.paused_ms)


def _require_live(live: Path) -> SwapFiles:
    if not live.exists():
        raise RebuildError(f"no live projection at {live}: nothing to swap (use --offline)")
    return SwapFiles(live)


async def _answer(
    files: SwapFiles, path: Path, request_id: str, wait_s: float
) -> SwapMessage | None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        message = files.read(path)
        if message is not None and message.id == request_id:
            return message
        await asyncio.sleep(0.01)
    return None
