"""Opening SQLite files the way every devreg store wants them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite

# WAL lets queries read while a batch commits; NORMAL sync is durable across a process crash
# in WAL mode (only an OS crash can lose the last commits, which the log then replays).
_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=OFF",
    "PRAGMA wal_autocheckpoint=10000",
    "PRAGMA busy_timeout=5000",
)

OFFSETS_DDL = """
CREATE TABLE IF NOT EXISTS kafka_offsets (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
"""


class CorruptStore(RuntimeError):
    """The file is not a sound SQLite database: it must be rebuilt, never served."""


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


async def open_db(path: Path, ddl: str, version: int) -> aiosqlite.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = await aiosqlite.connect(path)
    try:
        async with conn.execute("PRAGMA quick_check") as cursor:
            verdict = [row[0] for row in await cursor.fetchall()]
        if verdict != ["ok"]:
            raise CorruptStore(f"{path} failed its integrity check: {'; '.join(verdict[:3])}")
        await _check_version(conn, path, version)
        for pragma in _PRAGMAS:
            await conn.execute(pragma)
        await conn.executescript(ddl + OFFSETS_DDL)
        await conn.commit()
    except sqlite3.DatabaseError as exc:
        await conn.close()
        raise CorruptStore(f"{path} is not a usable SQLite database: {exc}") from exc
    except BaseException:
        await conn.close()
        raise
    return conn
