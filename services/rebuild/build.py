"""Folding the log into a fresh projection file: what rebuild, verify and as-of build on.

The fold is the live projector's code path: records go through ProjectionStore.apply (the one
fold, the same writes, rows and positions in one transaction) into a file with the live
schema. Only what a bulk load of a file nobody serves yet allows is changed: no journal and
no fsync (a failed build is thrown away), an exclusive lock held throughout, a larger page
cache, batches of 10000 events, the garbage collector paused (the fold allocates millions
of small acyclic objects), and the history's unique index built once after the load (~5% at
1M events, docs/benchmarks.md).
Measured and left out, no gain beyond the noise here: dropping the secondary indexes during
the load (an earlier session), skipping the row lookup of devices not seen yet (a Bloom
filter), and fetching the next batch while SQLite writes the current one.
A rebuild spreads this over processes, a set of partitions each (services/rebuild/parallel.py).
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

import msgspec

from projections.positions import Record
from projections.sqlite import ALONE, BULK_PRAGMAS
from projections.store import ProjectionStore
from projections.tables import HISTORY_INDEX, HISTORY_INDEX_DDL
from services.log.reader import LogReader
from services.progress import Progress

BATCH = 10_000  # events per transaction: half the commits of 5000, ~10% faster, +20 MiB
RecordFilter = Callable[[list[Record]], list[Record]]
Stops = dict[int, int]  # partition -> offset to stop before


class RebuildError(RuntimeError):
    """The rebuild did not replace the live projection; the message says why."""


class BuildReport(msgspec.Struct, kw_only=True):
    events: int
    applied: int
    duplicates: int
    seconds: float
    events_per_s: float
    positions: dict[int, int]
    mode: str | None = None
    paused_ms: int | None = None
    processes: int = 1


def remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def _execute(store: ProjectionStore, statements: Sequence[str]) -> None:
    for statement in statements:
        async with store.connection.execute(statement) as cursor:
            await cursor.fetchall()


class Build:
    """A projection file being folded from the log; `extend` may be called again to go on."""

    def __init__(self, store: ProjectionStore, path: Path, topic: str, progress: Progress):
        self.store, self.path, self.topic, self.progress = store, path, topic, progress
        self.applied = self.duplicates = 0
        self.processes = 1
        self._started = time.monotonic()

    @classmethod
    async def fresh(
        cls, path: Path, topic: str, progress: Progress, *, alone: bool = False
    ) -> Build:
        """`alone`: nothing else reads the file until it is closed (a rebuild), so it is locked
        exclusively; verify and as-of query it while it is open."""
        remove_db(path)
        # On aiosqlite's thread: SQLite writes a batch while the loop reads the next one.
        store = await ProjectionStore.open(path, swappable=False, threaded=True)
        # Alone, the history's unique index is built once at `close` instead of row by row
        # (faster at 1M, index build included: docs/benchmarks.md, "Figures behind the code").
        # The fold never hands the history a duplicate, and the index's build would fail on one.
        alone_statements = (ALONE, *BULK_PRAGMAS, f"DROP INDEX {HISTORY_INDEX}")
        await _execute(store, alone_statements if alone else BULK_PRAGMAS)
        return cls(store, path, topic, progress)

    @classmethod
    async def merged(
        cls,
        path: Path,
        topic: str,
        progress: Progress,
        parts: Sequence[BuildReport],
        started: float,
        *,
        alone: bool,
    ) -> Build:
        """Go on with a file merged from the builds `parts` (projections/merge.py) that began at
        `started` (time.monotonic); `alone` as for `fresh`. It has every index: later batches
        keep them."""
        store = await ProjectionStore.open(path, swappable=False, threaded=True, check=False)
        await _execute(store, (ALONE, *BULK_PRAGMAS) if alone else BULK_PRAGMAS)
        build = cls(store, path, topic, progress)
        build.applied = sum(part.applied for part in parts)
        build.duplicates = sum(part.duplicates for part in parts)
        build.processes = len(parts)
        build._started = started
        return build

    def positions(self) -> Stops:
        return {
            p: offset for (t, p), offset in self.store.next_offsets().items() if t == self.topic
        }

    async def extend(
        self, reader: LogReader, stops: Stops | None, keep: RecordFilter | None = None
    ) -> None:
        """Fold from where the file is up to `stops` (None: the end of the log)."""
        tps = await reader.partitions(self.topic)
        done = self.positions()
        starts = {tp: done.get(tp.partition, 0) for tp in tps}
        limits = None if stops is None else {tp: stops.get(tp.partition, 0) for tp in tps}
        if self.progress.total is None:
            ends = limits or await reader.end_offsets(tps)
            self.progress.total = sum(max(ends[tp] - starts[tp], 0) for tp in tps)
        await self.fold(reader.read(starts, limits, max_records=BATCH), keep)

    async def fold(
        self, batches: AsyncIterator[list[Record]], keep: RecordFilter | None = None
    ) -> None:
        """Fold `batches` of the events topic's records, a transaction each."""
        with gc_paused():
            async for batch in batches:
                self.progress.advance(len(batch))
                kept = keep(batch) if keep is not None else batch
                if kept:
                    result = await self.store.apply(kept)
                    self.applied += result.applied
                    self.duplicates += result.duplicates

    def report(self) -> BuildReport:
        seconds = time.monotonic() - self._started
        return BuildReport(
            events=self.progress.count,
            applied=self.applied,
            duplicates=self.duplicates,
            seconds=round(seconds, 3),
            events_per_s=round(self.progress.count / seconds if seconds else 0.0),
            positions=self.positions(),
            processes=self.processes,
        )

    async def close(self) -> None:
        """One self-contained, durable file (no -wal beside it), with every index of the live
        schema: ready to be renamed."""
        await _execute(self.store, (HISTORY_INDEX_DDL, "PRAGMA journal_mode=DELETE"))
        await self.store.close()
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
