"""Opening SQLite files the way every devreg store wants them."""

from __future__ import annotations

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


async def open_db(path: Path, ddl: str) -> aiosqlite.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = await aiosqlite.connect(path)
    for pragma in _PRAGMAS:
        await conn.execute(pragma)
    await conn.executescript(ddl + OFFSETS_DDL)
    await conn.commit()
    return conn
