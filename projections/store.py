"""The SQLite projection: applies event batches (rows + Kafka positions in one transaction)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path

import aiosqlite
import msgspec

from events import AnyEvent, ChannelCreated, decode_event
from projections import channel_series, device_lookup, queries
from projections.device_lookup import DeviceReader, DeviceView
from projections.device_rows import load_device_rows
from projections.fold import Changes, DeviceKey, DeviceRow, ProjectionError, fold
from projections.positions import (
    Position,
    Record,
    last_positions,
    read_positions,
    write_positions,
)
from projections.sqlite import offloaded, open_db
from projections.swap import SwapWatcher
from projections.tables import SCHEMA, SCHEMA_VERSION, write_changes

log = logging.getLogger(__name__)


class ApplyResult(msgspec.Struct, frozen=True):
    applied: int
    duplicates: int  # events at new offsets whose version was applied already (re-emitted)
    positions: list[Position]
    earliest_expiration: int | None = None  # the earliest expiration this batch wrote
    behind: int = 0  # records below the stored position (delivered again): not even decoded


class DueExpiration(msgspec.Struct, frozen=True):
    expiration: int
    app_id: str
    device_id: str
    version: int  # the device's version when seen: part of the expiry command's identity
    # The partition its events came from, its commands partition too (co-partitioned): the
    # scheduler groups by it instead of working out murmur2 of every due device's key.
    partition: int | None = None


ExpiryCursor = tuple[int, str, str]  # (expiration, app id, device id), keyset position


class ProjectionStore:
    def __init__(self, conn: aiosqlite.Connection, positions: list[Position], reader: DeviceReader):
        self._conn = conn
        self._reader = reader
        self._next: dict[tuple[str, int], int] = {
            (p.topic, p.partition): p.next_offset for p in positions
        }
        self.lock = asyncio.Lock()  # one writer at a time: a batch, or a swap (projections/swap)
        self._swaps: SwapWatcher | None = None

    @classmethod
    async def open(
        cls, path: Path, *, swappable: bool = True, threaded: bool = False, check: bool = True
    ) -> ProjectionStore:
        """`swappable`: answer `devreg rebuild` when it swaps in a rebuilt file. `threaded`
        and `check`: see projections/sqlite.py open_db."""
        conn = await open_db(
            path, SCHEMA, SCHEMA_VERSION, threaded=threaded, check=check, checkpoints_apart=True
        )
        reader = DeviceReader(path)
        reader.open()
        store = cls(conn, await read_positions(conn), reader)
        if swappable:
            connect = partial(open_db, ddl=SCHEMA, version=SCHEMA_VERSION, checkpoints_apart=True)
            store._swaps = SwapWatcher(store, conn, path, connect)
        return store

    async def close(self) -> None:
        if self._swaps is not None:
            await self._swaps.close()
        self._reader.close()
        await self._conn.close()

    @property
    def connection(self) -> aiosqlite.Connection:
        return self._conn

    @property
    def lookups_on_loop(self) -> bool:
        """GET by id answered on the plain connection (projections/device_lookup.py)."""
        return self._reader.is_open

    def release_file(self) -> None:
        """Before a swap: only the store's own connection may have the live file open."""
        self._reader.close()

    def reclaim_file(self) -> None:
        """After a swap that did not happen: back to the fast lookups on the same file."""
        self._reader.open()

    def swap_connection(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn  # a rebuilt file at the same positions (projections/swap.py)
        self._reader.open()

    async def positions(self) -> list[Position]:
        return await read_positions(self._conn)

    def next_offsets(self) -> dict[tuple[str, int], int]:
        return dict(self._next)

    def only_applied(self, records: Sequence[Record]) -> set[int]:
        """Partitions of which `records` holds only events applied already."""
        return {r.partition for r in records} - self.not_applied(records)

    def not_applied(self, records: Iterable[Record]) -> set[int]:
        """Partitions of which `records` holds events not applied yet."""
        return {r.partition for r in self._fresh(records)}

    def _fresh(self, records: Iterable[Record]) -> list[Record]:
        """Records not applied yet (a redelivery after a restart is below the stored offset)."""
        nxt = self._next
        return [r for r in records if r.offset >= nxt.get((r.topic, r.partition), 0)]

    async def _known(self, keys: set[DeviceKey]) -> dict[DeviceKey, DeviceRow]:
        return await load_device_rows(self._conn, keys)

    async def apply(self, records: Sequence[Record]) -> ApplyResult:
        """Fold `records` (events) and commit rows and positions in one transaction."""
        async with self.lock:
            return await self._apply(records)

    async def apply_next(self, records: Sequence[Record]) -> ApplyResult | None:
        """Apply the partitions of `records` that continue exactly from the stored positions:
        the command processor's own events, just acknowledged by Kafka, folded without
        waiting to read them back (services/stream/processor.py). A partition with a gap (the
        projector is behind, or another writer came in between) is left to the projector,
        which reads it from the log; the copies it reads later are below the position."""
        async with self.lock:
            following = _following(records, self._next)
            return await self._apply(following) if following else None

    async def _apply(self, records: Sequence[Record]) -> ApplyResult:
        fresh = self._fresh(records)
        if not fresh:
            return ApplyResult(0, 0, [], behind=len(records))
        events = [_decode(r) for r in fresh]
        keys = {(e.app_id, e.device_id) for e in events if hasattr(e, "device_id")}
        changes = Changes(await self._known(keys))
        for record, event in zip(fresh, events, strict=True):
            if not isinstance(event, ChannelCreated):
                changes.partitions[(event.app_id, event.device_id)] = record.partition
                if record.value:
                    changes.logged[event.event_id] = record.value
            fold(changes, event)
        positions = last_positions(fresh)
        try:
            await write_changes(self._conn, changes)
            await write_positions(self._conn, positions)
            await self._conn.commit()
        except BaseException:
            await self._conn.rollback()
            raise
        for p in positions:
            self._next[(p.topic, p.partition)] = p.next_offset
        expirations = [r.expiration for r in changes.subs.values() if r and r.expiration]
        return ApplyResult(
            changes.applied,
            changes.duplicates,
            positions,
            min(expirations, default=None),
            behind=len(records) - len(fresh),
        )

    async def due_expirations(
        self,
        now_ms: int,
        after: ExpiryCursor,
        limit: int,
        partitions: queries.Partitions = None,
    ) -> list[DueExpiration]:
        """Subscriptions whose expiration has passed, in (expiration, app, device) order after
        `after`: an index range scan, never a scan of every registration."""
        async with self._conn.execute(
            "SELECT s.expiration, s.app_id, s.device_id, d.version, s.partition"
            " FROM subscriptions s INDEXED BY subscriptions_by_expiration"
            " JOIN devices d USING (app_id, device_id)"
            " WHERE s.expiration IS NOT NULL AND s.expiration <= ?"
            " AND (s.expiration, s.app_id, s.device_id) > (?, ?, ?)"
            f"{queries.in_partitions('s.partition', partitions)}"
            " ORDER BY s.expiration, s.app_id, s.device_id LIMIT ?",
            (now_ms, *after, limit),
        ) as cursor:
            return [DueExpiration(*row) for row in await cursor.fetchall()]

    async def next_expiration(self, after_ms: int) -> int | None:
        """The earliest expiration later than `after_ms`, if any."""
        async with self._conn.execute(
            "SELECT MIN(expiration) FROM subscriptions WHERE expiration IS NOT NULL"
            " AND expiration > ?",
            (after_ms,),
        ) as cursor:
            row = await cursor.fetchone()
        return row[0] if row else None

    async def pending_expirations(self) -> int:
        async with (
            offloaded(self._conn),
            self._conn.execute(
                "SELECT COUNT(*) FROM subscriptions WHERE expiration IS NOT NULL"
            ) as cursor,
        ):
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def channel_counts(
        self, app_id: str, now_ms: int, partitions: queries.Partitions = None
    ) -> list[queries.ChannelCount]:
        # A scan of the app's subscriptions: off the loop, it may take a while at 1M.
        async with offloaded(self._conn):
            return await queries.channel_counts(self._conn, app_id, now_ms, partitions)

    async def channel_devices(
        self,
        app_id: str,
        channel: str,
        now_ms: int,
        after: str,
        limit: int,
        os: str | None,
        partitions: queries.Partitions = None,
    ) -> list[queries.ChannelDevice]:
        return await queries.channel_devices(
            self._conn, app_id, channel, now_ms, after, limit, os, partitions
        )

    async def channel_series(
        self, app_id: str, channel: str, moments: list[int], partitions: queries.Partitions = None
    ) -> list[int]:
        return await channel_series.channel_series(self._conn, app_id, channel, moments, partitions)

    async def device_history(
        self, app_id: str, device_id: str, after_version: int, limit: int
    ) -> list[bytes]:
        return await queries.device_history(
            self.connection, app_id, device_id, after_version, limit
        )

    async def device_history_until(self, app_id: str, device_id: str, until_ms: int) -> list[bytes]:
        return await queries.device_history_until(self.connection, app_id, device_id, until_ms)

    async def get_device(self, app_id: str, device_id: str, now_ms: int) -> DeviceView | None:
        """The device with its active channels (a passed expiration is never shown)."""
        rows = self._reader.rows(app_id, device_id, now_ms)
        if rows is None:
            async with self._conn.execute(device_lookup.SQL, (app_id, device_id, now_ms)) as cursor:
                rows = list(await cursor.fetchall())
        return device_lookup.view_of(app_id, device_id, rows)


def _decode(record: Record) -> AnyEvent:
    try:
        return decode_event(record.value or b"")
    except msgspec.DecodeError as exc:
        raise ProjectionError(
            f"undecodable event at {record.topic}[{record.partition}]@{record.offset}: {exc}"
        ) from exc


def _following(records: Sequence[Record], nxt: dict[tuple[str, int], int]) -> list[Record]:
    """The records of each partition whose offsets run on, without a gap, from `nxt`."""
    by_partition: dict[tuple[str, int], list[Record]] = {}
    for record in records:
        by_partition.setdefault((record.topic, record.partition), []).append(record)
    following: list[Record] = []
    for key, run in by_partition.items():
        offsets = [r.offset for r in run]
        start = nxt.get(key, 0)
        if offsets == list(range(start, start + len(run))):
            following.extend(run)
    return following
