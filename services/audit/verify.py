"""`devreg verify`: the live projection equals a fold of the log, and every hash chain holds.

The rebuild goes to a temporary file and stops at the live file's positions. A running worker
moves on meanwhile, so the comparison holds a read transaction on the live file (a WAL
snapshot), folds the rebuild up to the positions of that snapshot, and only then compares.
Chains: the fold itself checks every link and version (as the live projector does); on top,
each event's hash is recomputed, and a ledger of (device, version, hash) finds a re-emitted
version that is not the event it repeats.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite
import msgspec

from events import ChannelCreated, decode_event
from events.identity import event_hash
from projections.compare import differences
from projections.fold import ProjectionError
from projections.positions import Record
from projections.swap_files import read_only_uri
from services.kafka.clients import KafkaAccess
from services.log.reader import LogReader
from services.progress import Progress
from services.rebuild import parallel as parallel_build
from services.rebuild.build import Build, Stops
from services.rebuild.swap_in import live_stops

MAX_REPORTED = 1000  # differences and chain problems printed; the counts stay exact


class ChainProblem(msgspec.Struct, frozen=True, kw_only=True):
    kind: str = "chain"
    reason: str
    partition: int | None = None
    offset: int | None = None
    app_id: str | None = None
    device_id: str | None = None
    version: int | None = None


class Summary(msgspec.Struct, frozen=True, kw_only=True):
    kind: str = "summary"
    verdict: str  # pass | fail
    events: int
    differences: int
    chain_problems: int
    positions: dict[int, int]


class ChainCheck:
    """A record filter that keeps every record and checks each event on the way."""

    def __init__(self, ledger: Path, report: Callable[[ChainProblem], None]):
        self._report, self.problems = report, 0
        self._db = sqlite3.connect(ledger)
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(
            "CREATE TABLE events (app_id, device_id, version, hash, partition, offset)"
        )

    def problem(self, problem: ChainProblem) -> None:
        self.problems += 1
        if self.problems <= MAX_REPORTED:
            self._report(problem)

    def __call__(self, batch: list[Record]) -> list[Record]:
        rows = []
        for r in batch:
            try:
                event = decode_event(r.value or b"")
            except msgspec.DecodeError:
                continue  # the fold stops at it, and says where
            if event_hash(event) != event.hash:
                self.problem(_problem(r, event, "its hash does not match its content"))
            if not isinstance(event, ChannelCreated):
                rows.append(
                    (
                        event.app_id,
                        event.device_id,
                        event.version,
                        event.hash,
                        r.partition,
                        r.offset,
                    )
                )
        self._db.executemany("INSERT INTO events VALUES (?,?,?,?,?,?)", rows)
        return batch

    def conflicts(self) -> None:
        """Two different events claiming one version of one device."""
        self._db.commit()
        rows = self._db.execute(
            "SELECT app_id, device_id, version, group_concat(partition || '@' || offset, ', ')"
            " FROM events GROUP BY app_id, device_id, version HAVING count(DISTINCT hash) > 1"
        )
        for app_id, device_id, version, where in rows:
            reason = f"two different events claim version {version}: at {where}"
            self.problem(
                ChainProblem(reason=reason, app_id=app_id, device_id=device_id, version=version)
            )

    def close(self) -> None:
        self._db.close()


def _problem(r: Record, event: Any, reason: str) -> ChainProblem:
    return ChainProblem(
        reason=reason,
        partition=r.partition,
        offset=r.offset,
        app_id=event.app_id,
        device_id=getattr(event, "device_id", None),
        version=event.version,
    )


async def verify(
    live: Path,
    topic: str,
    kafka: KafkaAccess,
    progress: Progress,
    emit: Callable[[msgspec.Struct], None],
    processes: int | None = None,
) -> Summary:
    """`processes`: how many fold the log at once, as for `devreg rebuild`
    (services/rebuild/parallel.py); the hash chains are checked as the log is read."""
    stops = live_stops(live, topic)
    scratch = Path(tempfile.mkdtemp(prefix=".verify-", dir=live.parent))
    differing = 0
    chains = ChainCheck(scratch / "ledger.sqlite", emit)
    build: Build | None = None
    try:
        async with LogReader(kafka) as reader:
            rebuilt = scratch / "rebuilt.sqlite"
            build = await parallel_build.fold(
                rebuilt, topic, reader, progress, stops, processes, keep=chains, alone=False
            )
            async with _snapshot(build.path, live) as compare:
                stops = await _live_positions(compare, topic)
                await build.extend(reader, stops, keep=chains)
                async for difference in differences(compare):
                    differing += 1
                    if differing <= MAX_REPORTED:
                        emit(difference)
        chains.conflicts()
    except ProjectionError as exc:
        # The live projector stops at the same event: the log has a gap or a broken link.
        chains.problem(ChainProblem(reason=str(exc)))
    finally:
        chains.close()
        if build is not None:
            with contextlib.suppress(Exception):
                await build.store.close()
        shutil.rmtree(scratch, ignore_errors=True)
    failed = differing or chains.problems
    return Summary(
        verdict="fail" if failed else "pass",
        events=progress.count,
        differences=differing,
        chain_problems=chains.problems,
        positions=stops,
    )


@contextlib.asynccontextmanager
async def _snapshot(rebuilt: Path, live: Path) -> Any:
    """One connection on both files, holding a read transaction on the live one."""
    conn = await aiosqlite.connect(read_only_uri(rebuilt), uri=True, isolation_level=None)
    try:
        await conn.execute("ATTACH DATABASE ? AS live", (read_only_uri(live),))
        await conn.execute("BEGIN")
        yield conn
        await conn.execute("COMMIT")
    finally:
        await conn.close()


async def _live_positions(conn: aiosqlite.Connection, topic: str) -> Stops:
    async with conn.execute(
        "SELECT partition, next_offset FROM live.kafka_offsets WHERE topic = ?", (topic,)
    ) as cursor:
        return {row[0]: row[1] for row in await cursor.fetchall()}
