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


async def open_db(path: Path, ddl: str) -> aiosqlite.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = await aiosqlite.connect(path)
    try:
        async with conn.execute("PRAGMA quick_check") as cursor:
            verdict = [row[0] for row in await cursor.fetchall()]
        if verdict != ["ok"]:
            raise CorruptStore(f"{path} failed its integrity check: {'; '.join(verdict[:3])}")
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
