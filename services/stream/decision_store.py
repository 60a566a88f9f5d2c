"""The command processor's decision state in SQLite (not in faust tables: docs/design.md §2).

Device states, each app's known channels, and the outcome of every command id (the
idempotency record) are written with the commands-topic positions in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiosqlite
import msgspec

from events import DeviceState, Outcome, decode_outcome, encode
from projections.positions import Position, read_positions, write_positions
from projections.sqlite import joined_rows, open_db

# 2: device_states and command_outcomes are rowid tables with a unique index: their rows (a
#    ~400-byte JSON blob each) are too large for a WITHOUT ROWID b-tree (as for device_events)
# 3: token_fingerprints, the fingerprints of the tokens each device claimed (a forgotten
#    device's are erased from the token index: services/stream/token_claims.py); gone_devices,
#    the devices without channels and not forgotten, by when they went (retention)
# token_holders (no new version: a table added to a file that lacks it starts empty, and a
#    device without a row is fingerprinted as before, by opening its token)
SCHEMA_VERSION = 3
SCHEMA = """
CREATE TABLE IF NOT EXISTS token_holders (
    app_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    device_token TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    partition INTEGER NOT NULL,
    PRIMARY KEY (app_id, device_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gone_devices (
    app_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    partition INTEGER NOT NULL,
    since INTEGER NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (app_id, device_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS gone_devices_by_time ON gone_devices (app_id, since, device_id);
CREATE TABLE IF NOT EXISTS token_fingerprints (
    app_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    PRIMARY KEY (app_id, device_id, fingerprint)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS device_states (
    app_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    state BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS device_states_by_key ON device_states (app_id, device_id);
CREATE TABLE IF NOT EXISTS known_channels (
    app_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    PRIMARY KEY (app_id, channel)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS command_outcomes (
    app_id TEXT NOT NULL,
    command_id TEXT NOT NULL,
    outcome BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS command_outcomes_by_key ON command_outcomes (app_id, command_id);
"""

_state_decoder = msgspec.json.Decoder(DeviceState)
_state_encoder = msgspec.json.Encoder()
Key = tuple[str, str]
# A device's sealed token, that token's fingerprint, and the tokens partition of its records
# (services/stream/token_claims.py).
Holder = tuple[str, str, int]


class DecisionBatch(msgspec.Struct):
    """Everything one batch of commands changes, written atomically by `DecisionStore.commit`."""

    states: dict[Key, DeviceState] = {}
    channels: set[Key] = set()
    outcomes: dict[Key, Outcome] = {}
    positions: list[Position] = []
    # Token fingerprints claimed per device; devices whose fingerprints are all dropped first.
    fingerprints: dict[Key, set[str]] = {}
    unfingerprinted: set[Key] = set()
    # The fingerprint of each device's sealed token, where the batch learned it: a later
    # release of that token then needs no key (dropped with the fingerprints on a forget).
    holders: dict[Key, Holder] = {}
    partitions: dict[Key, int] = {}  # each changed device's partition


class GoneDevice(msgspec.Struct, frozen=True):
    app_id: str
    device_id: str
    since: int
    version: int


class DecisionStore:
    def __init__(self, conn: aiosqlite.Connection, positions: list[Position]):
        self._conn = conn
        self.next_offsets: dict[tuple[str, int], int] = {
            (p.topic, p.partition): p.next_offset for p in positions
        }

    @classmethod
    async def open(cls, path: Path, *, check: bool = True) -> DecisionStore:
        """`check`: see projections/sqlite.py open_db."""
        conn = await open_db(path, SCHEMA, SCHEMA_VERSION, check=check, checkpoints_apart=True)
        return cls(conn, await read_positions(conn))

    async def close(self) -> None:
        await self._conn.close()

    async def positions(self) -> list[Position]:
        return await read_positions(self._conn)

    async def _select_pairs(self, sql: str, keys: Iterable[Key]) -> list[tuple[Any, ...]]:
        """Rows for the given key pairs (projections/sqlite.py `joined_rows`)."""
        return await joined_rows(self._conn, sql, keys)

    async def load_states(self, keys: Iterable[Key]) -> dict[Key, DeviceState]:
        rows = await self._select_pairs(
            "SELECT t.app_id, t.device_id, t.state FROM (VALUES {values}) AS k"
            " JOIN device_states t ON t.app_id = k.column1 AND t.device_id = k.column2",
            keys,
        )
        return {(app, device): _state_decoder.decode(blob) for app, device, blob in rows}

    async def load_outcomes(self, keys: Iterable[Key]) -> dict[Key, Outcome]:
        rows = await self._select_pairs(
            "SELECT t.app_id, t.command_id, t.outcome FROM (VALUES {values}) AS k"
            " JOIN command_outcomes t ON t.app_id = k.column1 AND t.command_id = k.column2",
            keys,
        )
        return {(app, command): decode_outcome(blob) for app, command, blob in rows}

    async def load_channels(self, keys: Iterable[Key]) -> set[Key]:
        rows = await self._select_pairs(
            "SELECT t.app_id, t.channel, 1 FROM (VALUES {values}) AS k"
            " JOIN known_channels t ON t.app_id = k.column1 AND t.channel = k.column2",
            keys,
        )
        return {(app, channel) for app, channel, _ in rows}

    async def load_fingerprints(self, keys: Iterable[Key]) -> dict[Key, set[str]]:
        rows = await self._select_pairs(
            "SELECT t.app_id, t.device_id, t.fingerprint FROM (VALUES {values}) AS k"
            " JOIN token_fingerprints t ON t.app_id = k.column1 AND t.device_id = k.column2",
            keys,
        )
        found: dict[Key, set[str]] = {}
        for app, device, fp in rows:
            found.setdefault((app, device), set()).add(str(fp))
        return found

    async def load_holders(self, keys: Iterable[Key]) -> dict[Key, Holder]:
        rows = await self._select_pairs(
            "SELECT t.app_id, t.device_id, t.device_token, t.fingerprint, t.partition"
            " FROM (VALUES {values}) AS k"
            " JOIN token_holders t ON t.app_id = k.column1 AND t.device_id = k.column2",
            keys,
        )
        return {(app, device): (token, fp, int(p)) for app, device, token, fp, p in rows}

    async def _write_gone(self, batch: DecisionBatch) -> None:
        """A device without channels whose token is not erased yet is gone since its last
        event; any other changed device is not (registered again, or forgotten)."""
        gone = [(key, s) for key, s in batch.states.items() if not s.exists and s.device_token]
        await self._conn.executemany(
            "DELETE FROM gone_devices WHERE app_id = ? AND device_id = ?",
            [key for key, s in batch.states.items() if s.exists or not s.device_token],
        )
        await self._conn.executemany(
            "INSERT OR REPLACE INTO gone_devices (app_id, device_id, partition, since, version)"
            " VALUES (?,?,?,?,?)",
            [(*key, batch.partitions.get(key, 0), s.changed_at, s.version) for key, s in gone],
        )

    async def gone_before(
        self, app_id: str, before: int, limit: int, partitions: frozenset[int] | None
    ) -> list[GoneDevice]:
        """The app's devices gone at or before `before`: an index range, never a scan."""
        where = ""
        if partitions is not None:
            where = (
                f" AND partition IN ({','.join(str(int(p)) for p in sorted(partitions)) or 'NULL'})"
            )
        async with self._conn.execute(
            "SELECT app_id, device_id, since, version FROM gone_devices"
            " INDEXED BY gone_devices_by_time WHERE app_id = ? AND since <= ?"
            f"{where} ORDER BY since, device_id LIMIT ?",
            (app_id, before, limit),
        ) as cursor:
            return [GoneDevice(*row) for row in await cursor.fetchall()]

    async def next_gone(self, app_id: str, after: int) -> int | None:
        """The earliest time a device of the app went, later than `after`."""
        async with self._conn.execute(
            "SELECT MIN(since) FROM gone_devices WHERE app_id = ? AND since > ?", (app_id, after)
        ) as cursor:
            row = await cursor.fetchone()
        return row[0] if row and row[0] is not None else None

    async def commit(self, batch: DecisionBatch) -> None:
        conn = self._conn
        try:
            await conn.execute("BEGIN")
            await conn.executemany(
                "DELETE FROM token_fingerprints WHERE app_id = ? AND device_id = ?",
                sorted(batch.unfingerprinted),
            )
            await conn.executemany(
                "INSERT OR IGNORE INTO token_fingerprints (app_id, device_id, fingerprint)"
                " VALUES (?,?,?)",
                [(*key, fp) for key, fps in batch.fingerprints.items() for fp in sorted(fps)],
            )
            await conn.executemany(
                "DELETE FROM token_holders WHERE app_id = ? AND device_id = ?",
                sorted(batch.unfingerprinted),
            )
            await conn.executemany(
                "INSERT OR REPLACE INTO token_holders (app_id, device_id, device_token,"
                " fingerprint, partition) VALUES (?,?,?,?,?)",
                [(*key, *holder) for key, holder in batch.holders.items()],
            )
            await conn.executemany(
                "INSERT OR REPLACE INTO device_states (app_id, device_id, state) VALUES (?,?,?)",
                [(*key, _state_encoder.encode(s)) for key, s in batch.states.items()],
            )
            await conn.executemany(
                "INSERT OR IGNORE INTO known_channels (app_id, channel) VALUES (?,?)",
                sorted(batch.channels),
            )
            await conn.executemany(
                "INSERT OR IGNORE INTO command_outcomes (app_id, command_id, outcome)"
                " VALUES (?,?,?)",
                [(*key, encode(o)) for key, o in batch.outcomes.items()],
            )
            await self._write_gone(batch)
            await write_positions(conn, batch.positions)
            await conn.commit()
        except BaseException:
            await conn.rollback()
            raise
        for p in batch.positions:
            self.next_offsets[(p.topic, p.partition)] = p.next_offset
