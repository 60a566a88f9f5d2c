"""A worker store's WAL checkpointed on a thread of its own (projections/checkpoints.py): its
commits on the event loop never copy the WAL into the file, the thread does, and it ends with
the connection."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from projections.checkpoints import Checkpointer
from projections.sqlite import InlineConnection, open_db
from tests.support import wait_for

DDL = "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB NOT NULL);"


async def _autocheckpoint(conn: object) -> int:
    assert isinstance(conn, InlineConnection)
    async with conn.execute("PRAGMA wal_autocheckpoint") as cursor:
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def test_given_a_store_with_checkpoints_apart_then_its_commits_leave_them_to_a_thread(
    tmp_path: Path,
) -> None:
    # Given a store opened as a worker's decisions, index and keys stores are
    conn = await open_db(tmp_path / "s.sqlite", DDL, 1, checkpoints_apart=True)
    assert isinstance(conn, InlineConnection)
    checkpointer = conn.checkpointer
    assert checkpointer is not None

    # Then its commits never checkpoint, a thread does; and closing it ends that thread
    assert await _autocheckpoint(conn) == 0
    assert checkpointer.running
    await conn.close()
    assert not checkpointer.running

    # And a store opened without it checkpoints in its commits, as SQLite does
    plain = await open_db(tmp_path / "p.sqlite", DDL, 1)
    try:
        assert await _autocheckpoint(plain) == 10000
        assert isinstance(plain, InlineConnection)
        assert plain.checkpointer is None
    finally:
        await plain.close()


def _write(path: Path, rows: int) -> None:
    with sqlite3.connect(path) as conn:
        conn.executemany("INSERT INTO t (v) VALUES (?)", [(b"x" * 1000,) for _ in range(rows)])


async def test_given_a_wal_past_the_threshold_then_the_thread_moves_it_into_the_file(
    tmp_path: Path,
) -> None:
    # Given a file in WAL mode whose writers never checkpoint, with 1 MB in its WAL
    path = tmp_path / "w.sqlite"
    writer = sqlite3.connect(path)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute(DDL)
    await asyncio.to_thread(_write, path, 1000)
    before = path.stat().st_size

    # When a checkpointer watches it with a 64 KB threshold
    checkpointer = Checkpointer(path, every_bytes=64 << 10)
    checkpointer.start()
    try:
        # Then the WAL's pages reach the file
        await wait_for(lambda: checkpointer.checkpoints >= 1, 10, "a checkpoint")
        assert path.stat().st_size > before + 900_000
        assert writer.execute("SELECT count(*) FROM t").fetchone() == (1000,)
    finally:
        await asyncio.to_thread(checkpointer.stop)
        writer.close()
