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
from projections.sqlite import joined_rows, open_db
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
    async def open(cls, path: Path, *, check: bool = True) -> IndexStore:
        """`check`: see projections/sqlite.py open_db."""
        conn = await open_db(path, SCHEMA, SCHEMA_VERSION, check=check, checkpoints_apart=True)
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

    def fresh(self, batch: Sequence[Record]) -> list[Record]:
        nxt = self.next_offsets
        return [r for r in batch if r.offset >= nxt.get((r.topic, r.partition), 0)]

    async def fold(
        self, batch: Sequence[Record], superseding: frozenset[str]
    ) -> tuple[list[Superseded], list[Position]]:
        """Fold `batch` into the index (uncommitted: `commit` after the supersede commands
        are acknowledged); returns what the claims superseded in apps of `superseding`.

        The rows the batch touches are read with one query per table, the records applied
        to them in memory in order, and the result written back: the same rows as applying
        each record to the tables, with a few statements per batch instead of four per
        record."""
        fresh = self.fresh(batch)
        parsed = [(slot, record.value) for record in fresh if (slot := records.slot_of(record.key))]
        view = _View(
            await self._select("token_seen", "version", [s for s, _ in parsed]),
            await self._select_holders({(s[0], s[1]) for s, _ in parsed}),
        )
        superseded: list[Superseded] = []
        for slot, raw in parsed:
            if raw is None:
                view.erase(slot)
                continue
            value = records.decode_value(raw)
            if value is not None:
                superseded.extend(view.apply(slot, value, superseding))
        await self._conn.execute("BEGIN")
        await view.write(self._conn)
        return superseded, last_positions(fresh)

    async def _select(
        self, table: str, column: str, slots: list[records.Slot]
    ) -> dict[records.Slot, int]:
        rows = await joined_rows(
            self._conn,
            f"SELECT t.app_id, t.fingerprint, t.device_id, t.{column}"
            f" FROM (VALUES {{values}}) AS k JOIN {table} t ON t.app_id = k.column1"
            " AND t.fingerprint = k.column2 AND t.device_id = k.column3",
            slots,
        )
        return {(app_id, fp, device_id): int(v) for app_id, fp, device_id, v in rows}

    async def _select_holders(self, tokens: set[tuple[str, str]]) -> dict[tuple[str, str], Holder]:
        rows = await joined_rows(
            self._conn,
            "SELECT t.app_id, t.fingerprint, t.device_id, t.registration, t.registered_at"
            " FROM (VALUES {values}) AS k JOIN token_holders t ON t.app_id = k.column1"
            " AND t.fingerprint = k.column2",
            tokens,
        )
        return {
            (a, fp): Holder(device, registration, at) for a, fp, device, registration, at in rows
        }

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


class _View:
    """The rows a batch touches, as the batch's records leave them: `None` where a row is
    gone. Written back in one go (`write`)."""

    def __init__(self, seen: dict[records.Slot, int], holders: dict[tuple[str, str], Holder]):
        self.seen: dict[records.Slot, int | None] = dict(seen)
        self.holders: dict[tuple[str, str], Holder | None] = dict(holders)
        self._touched_seen: set[records.Slot] = set()
        self._touched_holders: set[tuple[str, str]] = set()

    def erase(self, slot: records.Slot) -> None:
        """A forgotten device's record: its rows under this fingerprint go."""
        app_id, fp, device_id = slot
        self._set_seen(slot, None)
        holder = self.holders.get((app_id, fp))
        if holder is not None and holder.device_id == device_id:
            self._set_holder((app_id, fp), None)

    def apply(
        self, slot: records.Slot, value: Claim | Release, superseding: frozenset[str]
    ) -> list[Superseded]:
        app_id, fp, device_id = slot
        seen = self.seen.get(slot)
        if seen is not None and value.version <= seen:
            return []  # sent again by a processor deciding its partition again
        self._set_seen(slot, value.version)
        holder = self.holders.get((app_id, fp))
        if isinstance(value, Release):
            if holder is not None and holder.device_id == device_id:
                self._set_holder((app_id, fp), None)
            return []
        self._set_holder((app_id, fp), Holder(device_id, value.registration, value.occurred_at))
        if holder is None or holder.device_id == device_id or app_id not in superseding:
            return []  # a device registering its own token again is not superseded
        return [
            Superseded(app_id, holder.device_id, device_id, holder.registration, value.registration)
        ]

    def _set_seen(self, slot: records.Slot, version: int | None) -> None:
        self.seen[slot] = version
        self._touched_seen.add(slot)

    def _set_holder(self, token: tuple[str, str], holder: Holder | None) -> None:
        self.holders[token] = holder
        self._touched_holders.add(token)

    async def write(self, conn: aiosqlite.Connection) -> None:
        seen = [(slot, self.seen[slot]) for slot in sorted(self._touched_seen)]
        holders = [(token, self.holders[token]) for token in sorted(self._touched_holders)]
        await conn.executemany(
            "DELETE FROM token_seen WHERE app_id = ? AND fingerprint = ? AND device_id = ?",
            [slot for slot, version in seen if version is None],
        )
        await conn.executemany(
            "INSERT OR REPLACE INTO token_seen (app_id, fingerprint, device_id, version)"
            " VALUES (?,?,?,?)",
            [(*slot, version) for slot, version in seen if version is not None],
        )
        await conn.executemany(
            "DELETE FROM token_holders WHERE app_id = ? AND fingerprint = ?",
            [token for token, holder in holders if holder is None],
        )
        await conn.executemany(
            "INSERT OR REPLACE INTO token_holders (app_id, fingerprint, device_id, registration,"
            " registered_at) VALUES (?,?,?,?,?)",
            [(*token, *msgspec.structs.astuple(h)) for token, h in holders if h is not None],
        )
