"""Opening SQLite files the way every devreg store wants them."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from contextvars import ContextVar
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite

from projections.checkpoints import Checkpointer

# WAL lets queries read while a batch commits; NORMAL sync is durable across a process crash
# in WAL mode (only an OS crash can lose the last commits, which the log then replays).
_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=OFF",
    "PRAGMA wal_autocheckpoint=10000",
    "PRAGMA busy_timeout=5000",
)

# For a file nobody serves yet (a rebuild's, services/rebuild/build.py; a merge,
# projections/merge.py):
# every page written once (no WAL to checkpoint, no journal) and never fsynced: ~10% faster.
# Nothing can be rolled back, which is fine for a file that is thrown away if anything fails.
# The exclusive lock, held until the file is closed, lets SQLite keep its page cache from one
# transaction to the next instead of re-checking the file each time: ~8% faster at 1M events.
BULK_PRAGMAS = ("PRAGMA journal_mode=OFF", "PRAGMA synchronous=OFF", "PRAGMA cache_size=-65536")
ALONE = "PRAGMA locking_mode=EXCLUSIVE"

OFFSETS_DDL = """
CREATE TABLE IF NOT EXISTS kafka_offsets (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
"""


_offloaded: ContextVar[bool] = ContextVar("offloaded", default=False)


class InlineConnection(aiosqlite.Connection):
    """aiosqlite's interface, run on the event loop's own thread (except where offloaded).

    Why: a worker's batch makes ~25 short SQLite calls. On aiosqlite's thread each one is a
    hand-off there and back, and while the loop is busy the thread then waits for the GIL
    before every row it binds: on an ingest, inline costs about a third less CPU per command
    (docs/benchmarks.md, "Figures behind the code"). Calls run inline are short
    (point lookups, batch writes, pages); a query that may scan a large part of the file
    runs on the thread inside `offloaded()`, and the connection is used by nobody else while
    it does. This relies on aiosqlite 0.22's private `_execute`/`_connect` (pinned in
    pyproject.toml; tests/projections/test_inline_sqlite.py fails if they change)."""

    def __init__(self, connector: Callable[[], sqlite3.Connection]):
        super().__init__(connector, 64)
        self._thread_use = asyncio.Lock()
        self.checkpointer: Checkpointer | None = None  # its WAL's, when not in its commits
        self._checkpointed: Path | None = None  # the file, once its checkpoints went apart

    def checkpoints_apart(self, path: Path) -> None:
        """From now on a thread checkpoints `path` (this connection's file), not its commits:
        call after `PRAGMA wal_autocheckpoint=0`."""
        self._checkpointed = path
        self.checkpointer = Checkpointer(path)
        self.checkpointer.start()

    async def stop_checkpoints(self) -> None:
        """Stop the thread (its connection closed): for a close, or for leaving WAL mode,
        which no other connection may hold the file open for."""
        checkpointer, self.checkpointer = self.checkpointer, None
        if checkpointer is not None:
            await asyncio.to_thread(checkpointer.stop)

    def restart_checkpoints(self) -> None:
        """After `stop_checkpoints`, back in WAL mode."""
        if self._checkpointed is not None and self.checkpointer is None:
            self.checkpoints_apart(self._checkpointed)

    async def close(self) -> None:
        await self.stop_checkpoints()  # its connection first: the last to close cleans up
        await super().close()

    async def _connect(self) -> InlineConnection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if _offloaded.get():
            return await super()._execute(fn, *args, **kwargs)  # type: ignore[no-untyped-call]
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        if self._thread_use.locked():
            async with self._thread_use:  # an offloaded query has the connection: after it
                pass
        return fn(*args, **kwargs)

    @contextlib.asynccontextmanager
    async def offloaded(self) -> AsyncIterator[None]:
        """The calls made inside run on aiosqlite's thread: the loop goes on meanwhile."""
        async with self._thread_use:
            token = _offloaded.set(True)
            try:
                yield
            finally:
                _offloaded.reset(token)


@contextlib.asynccontextmanager
async def offloaded(conn: aiosqlite.Connection) -> AsyncIterator[None]:
    """Run a possibly long query off the loop, whichever kind of connection `conn` is."""
    if isinstance(conn, InlineConnection):
        async with conn.offloaded():
            yield
    else:
        yield


class CorruptStore(RuntimeError):
    """The file is not a sound SQLite database: it must be rebuilt, never served."""


async def _check_integrity(conn: aiosqlite.Connection, path: Path) -> None:
    async with conn.execute("PRAGMA quick_check") as cursor:
        verdict = [row[0] for row in await cursor.fetchall()]
    if verdict != ["ok"]:
        raise CorruptStore(f"{path} failed its integrity check: {'; '.join(verdict[:3])}")


async def _check_version(conn: aiosqlite.Connection, path: Path, version: int) -> None:
    """A store written with another schema is rebuilt from the log, not migrated: the log is
    the source of truth and the stores are disposable."""
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    found = int(row[0]) if row else 0
    async with conn.execute("SELECT count(*) FROM sqlite_master") as cursor:
        row = await cursor.fetchone()
    empty = not row or row[0] == 0
    if found != version and not empty:
        raise CorruptStore(f"{path} has schema version {found}, this devreg writes {version}")
    await conn.execute(f"PRAGMA user_version = {int(version)}")


async def open_db(
    path: Path,
    ddl: str,
    version: int,
    *,
    threaded: bool = False,
    check: bool = True,
    checkpoints_apart: bool = False,
) -> aiosqlite.Connection:
    """`threaded`: plain aiosqlite, every call on its thread (a rebuild, whose writes overlap
    its reading of the log); else an InlineConnection (a worker's stores). `check=False`: no
    integrity scan, for a file this process has just written (the scan reads every page:
    ~9 s for a 1M-event projection). `checkpoints_apart` (an InlineConnection's): its WAL is
    checkpointed on a thread, not in its commits (projections/checkpoints.py)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if threaded:
        conn = await aiosqlite.connect(path)
    else:
        # Used from the loop's thread and, offloaded, from aiosqlite's: never at once.
        connector = partial(sqlite3.connect, str(path), check_same_thread=False)
        conn = await InlineConnection(connector)
    try:
        if check:
            await _check_integrity(conn, path)
        await _check_version(conn, path, version)
        for pragma in _PRAGMAS:
            await conn.execute(pragma)
        await conn.executescript(ddl + OFFSETS_DDL)
        await conn.commit()
        if checkpoints_apart and isinstance(conn, InlineConnection):
            await conn.execute("PRAGMA wal_autocheckpoint=0")
            conn.checkpoints_apart(path)
    except sqlite3.DatabaseError as exc:
        await conn.close()
        raise CorruptStore(f"{path} is not a usable SQLite database: {exc}") from exc
    except BaseException:
        await conn.close()
        raise
    return conn


# Keys per query: SQLite allows 32,766 parameters.
JOIN_CHUNK = 400


async def joined_rows(
    conn: aiosqlite.Connection, sql: str, keys: Iterable[tuple[Any, ...]]
) -> list[tuple[Any, ...]]:
    """The rows `sql` selects for many keys (tuples of one width), joined from a VALUES table
    that `sql` names as `(VALUES {values}) AS k` (columns `k.column1`, ...): one query per
    JOIN_CHUNK keys. SQLite answers the plainer `(a, b) IN (VALUES …)` with a scan of the
    whole table, which made every batch slower as a registry grew (docs/benchmarks.md,
    "Figures behind the code")."""
    rows: list[tuple[Any, ...]] = []
    ordered = sorted(set(keys))
    if not ordered:
        return rows
    one = "(" + ",".join("?" * len(ordered[0])) + ")"
    for start in range(0, len(ordered), JOIN_CHUNK):
        chunk = ordered[start : start + JOIN_CHUNK]
        params = [part for key in chunk for part in key]
        async with conn.execute(sql.format(values=",".join(one for _ in chunk)), params) as cur:
            rows.extend(await cur.fetchall())  # type: ignore[arg-type]
    return rows
