"""The token index: per app and token fingerprint, the device that holds it (SQLite).

Folded from the tokens topic by the worker that owns each of its partitions, the rows and the
topic's positions in one transaction (docs/design.md §6 does the same for the projection).
`token_seen` keeps, per fingerprint and device, the version of the last record folded: a
processor that decides a partition again re-sends its claims and releases, and those are
recognised as repeats. A forgotten device's rows are deleted and overwritten (secure_delete).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import aiosqlite
import msgspec

from projections.positions import Position, Record, last_positions, read_positions, write_positions
from projections.sqlite import open_db
from services.tokens import records
from services.tokens.records import Claim, Release

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS token_holders (
    app_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    device_id TEXT NOT NULL,
    registration TEXT NOT NULL,
    registered_at INTEGER NOT NULL,
    PRIMARY KEY (app_id, fingerprint)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS token_seen (
    app_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    device_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (app_id, fingerprint, device_id)
) WITHOUT ROWID;
"""


class Holder(msgspec.Struct, frozen=True):
    device_id: str
    registration: str
    registered_at: int


class Superseded(msgspec.Struct, frozen=True):
    """A holder that another device of the app took the token from."""

    app_id: str
    device_id: str
    by_device_id: str
    claim: str  # the holder's registration
    by_claim: str  # the newer device's registration: with the holder, the command's identity


class IndexStore:
    def __init__(self, conn: aiosqlite.Connection, positions: list[Position]):
        self._conn = conn
        self.next_offsets = {(p.topic, p.partition): p.next_offset for p in positions}

    @classmethod
    async def open(cls, path: Path) -> IndexStore:
        conn = await open_db(path, SCHEMA, SCHEMA_VERSION)
        await conn.execute("PRAGMA secure_delete=ON")
        return cls(conn, await read_positions(conn))

    async def close(self) -> None:
        await self._conn.close()

    async def positions(self) -> list[Position]:
        return await read_positions(self._conn)

    async def holder(self, app_id: str, fp: str) -> Holder | None:
        async with self._conn.execute(
            "SELECT device_id, registration, registered_at FROM token_holders"
            " WHERE app_id = ? AND fingerprint = ?",
            (app_id, fp),
        ) as cursor:
            row = await cursor.fetchone()
        return Holder(*row) if row else None

    async def _seen(self, slot: records.Slot) -> int | None:
        async with self._conn.execute(
            "SELECT version FROM token_seen WHERE app_id = ? AND fingerprint = ? AND device_id = ?",
            slot,
        ) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else None

    def fresh(self, batch: Sequence[Record]) -> list[Record]:
        nxt = self.next_offsets
        return [r for r in batch if r.offset >= nxt.get((r.topic, r.partition), 0)]

    async def fold(
        self, batch: Sequence[Record], superseding: frozenset[str]
    ) -> tuple[list[Superseded], list[Position]]:
        """Fold `batch` into the index (uncommitted: `commit` after the supersede commands
        are acknowledged); returns what the claims superseded in apps of `superseding`."""
        fresh = self.fresh(batch)
        superseded: list[Superseded] = []
        await self._conn.execute("BEGIN")
        for record in fresh:
            slot = records.slot_of(record.key)
            if slot is None:
                continue
            value = None if record.value is None else records.decode_value(record.value)
            if record.value is None:
                await self._erase(slot)
            elif value is not None:
                found = await self._apply(slot, value, superseding)
                superseded.extend(found)
        return superseded, last_positions(fresh)

    async def commit(self, positions: list[Position]) -> None:
        try:
            await write_positions(self._conn, positions)
            await self._conn.commit()
        except BaseException:
            await self._conn.rollback()
            raise
        for p in positions:
            self.next_offsets[(p.topic, p.partition)] = p.next_offset

    async def rollback(self) -> None:
        await self._conn.rollback()

    async def _erase(self, slot: records.Slot) -> None:
        app_id, fp, device_id = slot
        await self._conn.execute(
            "DELETE FROM token_seen WHERE app_id = ? AND fingerprint = ? AND device_id = ?", slot
        )
        await self._conn.execute(
            "DELETE FROM token_holders WHERE app_id = ? AND fingerprint = ? AND device_id = ?",
            (app_id, fp, device_id),
        )

    async def _apply(
        self, slot: records.Slot, value: Claim | Release, superseding: frozenset[str]
    ) -> list[Superseded]:
        app_id, fp, device_id = slot
        seen = await self._seen(slot)
        if seen is not None and value.version <= seen:
            return []  # sent again by a processor deciding its partition again
        await self._conn.execute(
            "INSERT OR REPLACE INTO token_seen (app_id, fingerprint, device_id, version)"
            " VALUES (?,?,?,?)",
            (*slot, value.version),
        )
        holder = await self.holder(app_id, fp)
        if isinstance(value, Release):
            if holder is not None and holder.device_id == device_id:
                await self._conn.execute(
                    "DELETE FROM token_holders WHERE app_id = ? AND fingerprint = ?", (app_id, fp)
                )
            return []
        await self._conn.execute(
            "INSERT OR REPLACE INTO token_holders (app_id, fingerprint, device_id, registration,"
            " registered_at) VALUES (?,?,?,?,?)",
            (app_id, fp, device_id, value.registration, value.occurred_at),
        )
        if holder is None or holder.device_id == device_id or app_id not in superseding:
            return []  # a device registering its own token again is not superseded
        return [
            Superseded(app_id, holder.device_id, device_id, holder.registration, value.registration)
        ]
