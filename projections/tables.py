"""The projection's tables, and writing one batch of folded changes into them."""

from __future__ import annotations

import aiosqlite
import msgspec

from events import encode
from projections.fold import Changes

# 2: rows carry the events partition they came from (scale-out)
# 3: device_events, each device's applied history (history and as-of queries)
# 4: device_events is a rowid table with a unique index: its rows (an event each, ~450 bytes)
#    are too large for a WITHOUT ROWID b-tree; a 1M-event rebuild is ~8% faster
SCHEMA_VERSION = 4
# The history's unique index, apart: a rebuild builds it once, after the load
# (services/rebuild/build.py; projections/merge.py for a rebuild in parts).
HISTORY_INDEX = "device_events_by_device"
HISTORY_INDEX_DDL = (
    f"CREATE UNIQUE INDEX IF NOT EXISTS {HISTORY_INDEX}"
    " ON device_events (app_id, device_id, version)"
)
SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS devices (
    app_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    partition INTEGER NOT NULL,
    device_token TEXT NOT NULL,
    os TEXT NOT NULL,
    os_version TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_hash TEXT NOT NULL,
    registered_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (app_id, device_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subscriptions (
    app_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    partition INTEGER NOT NULL,
    registration_id TEXT NOT NULL,
    expiration INTEGER,
    subscribed_at INTEGER NOT NULL,
    PRIMARY KEY (app_id, device_id, channel)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS subscriptions_by_channel
    ON subscriptions (app_id, channel, device_id);
CREATE INDEX IF NOT EXISTS subscriptions_by_expiration
    ON subscriptions (expiration, app_id, device_id) WHERE expiration IS NOT NULL;
CREATE TABLE IF NOT EXISTS channels (
    app_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (app_id, channel)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS device_events (
    app_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    occurred_at INTEGER NOT NULL,
    event BLOB NOT NULL
);
"""
    + HISTORY_INDEX_DDL
    + ";\n"
)


async def write_changes(conn: aiosqlite.Connection, changes: Changes) -> None:
    """Write a batch's rows (the caller commits, with the positions, in one transaction)."""
    await conn.execute("BEGIN")
    await conn.executemany(
        "INSERT OR REPLACE INTO devices (partition, app_id, device_id, device_token, os,"
        " os_version, version, last_hash, registered_at, updated_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?)",
        [
            (changes.partitions[key], *msgspec.structs.astuple(row))
            for key, row in changes.devices.items()
        ],
    )
    deleted = [key for key, row in changes.subs.items() if row is None]
    upserted = [
        (changes.partitions[key[:2]], *key, row.registration_id, row.expiration, row.subscribed_at)
        for key, row in changes.subs.items()
        if row is not None
    ]
    await conn.executemany(
        "DELETE FROM subscriptions WHERE app_id = ? AND device_id = ? AND channel = ?", deleted
    )
    await conn.executemany(
        "INSERT OR REPLACE INTO subscriptions (partition, app_id, device_id, channel,"
        " registration_id, expiration, subscribed_at) VALUES (?,?,?,?,?,?,?)",
        upserted,
    )
    await conn.executemany(
        "INSERT INTO channels (app_id, channel, created_at) VALUES (?,?,?)"
        " ON CONFLICT (app_id, channel) DO UPDATE SET"
        " created_at = min(created_at, excluded.created_at)",
        [(*key, created) for key, created in changes.channels.items()],
    )
    logged = changes.logged
    await conn.executemany(
        "INSERT OR IGNORE INTO device_events (app_id, device_id, version, occurred_at, event)"
        " VALUES (?,?,?,?,?)",
        [
            (e.app_id, e.device_id, e.version, e.occurred_at, logged.get(e.event_id) or encode(e))
            for e in changes.history
        ],
    )
