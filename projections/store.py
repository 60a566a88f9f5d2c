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
from projections import queries
from projections.device_rows import load_device_rows
from projections.fold import Changes, DeviceKey, DeviceRow, ProjectionError, fold
from projections.positions import (
    Position,
    Record,
    last_positions,
    read_positions,
    write_positions,
)
from projections.sqlite import open_db
from projections.swap import SwapWatcher
from projections.tables import SCHEMA, SCHEMA_VERSION, write_changes

log = logging.getLogger(__name__)


class ApplyResult(msgspec.Struct, frozen=True):
    applied: int
    duplicates: int
    positions: list[Position]
    earliest_expiration: int | None = None  # the earliest expiration this batch wrote


class DeviceView(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str
    device_id: str
    device_token: str
    os: str
    os_version: str
    version: int
    channels: dict[str, tuple[str, int | None]]  # channel -> (registration id, expiration)


class DueExpiration(msgspec.Struct, frozen=True):
    expiration: int
    app_id: str
    device_id: str
    version: int  # the device's version when seen: part of the expiry command's identity


ExpiryCursor = tuple[int, str, str]  # (expiration, app id, device id), keyset position


class ProjectionStore:
    def __init__(self, conn: aiosqlite.Connection, positions: list[Position]):
        self._conn = conn
        self._next: dict[tuple[str, int], int] = {
            (p.topic, p.partition): p.next_offset for p in positions
        }
        self.lock = asyncio.Lock()  # one writer at a time: a batch, or a swap (projections/swap)
        self._swaps: SwapWatcher | None = None

    @classmethod
    async def open(cls, path: Path, *, swappable: bool = True) -> ProjectionStore:
        """`swappable`: answer `devreg rebuild` when it swaps in a rebuilt file."""
        conn = await open_db(path, SCHEMA, SCHEMA_VERSION)
        store = cls(conn, await read_positions(conn))
        if swappable:
            connect = partial(open_db, ddl=SCHEMA, version=SCHEMA_VERSION)
            store._swaps = SwapWatcher(store, conn, path, connect)
        return store

    async def close(self) -> None:
        if self._swaps is not None:
            await self._swaps.close()
        await self._conn.close()

    @property
    def connection(self) -> aiosqlite.Connection:
        return self._conn

    def swap_connection(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn  # a rebuilt file at the same positions (projections/swap.py)

    async def positions(self) -> list[Position]:
        return await read_positions(self._conn)

    def next_offsets(self) -> dict[tuple[str, int], int]:
        return dict(self._next)

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

    async def _apply(self, records: Sequence[Record]) -> ApplyResult:
        fresh = self._fresh(records)
        if not fresh:
            return ApplyResult(0, len(records), [])
        events = [_decode(r) for r in fresh]
        keys = {(e.app_id, e.device_id) for e in events if hasattr(e, "device_id")}
        changes = Changes(await self._known(keys))
        for record, event in zip(fresh, events, strict=True):
            if not isinstance(event, ChannelCreated):
                changes.partitions[(event.app_id, event.device_id)] = record.partition
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
            changes.duplicates + len(records) - len(fresh),
            positions,
            min(expirations, default=None),
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
            "SELECT s.expiration, s.app_id, s.device_id, d.version"
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
        async with self._conn.execute(
            "SELECT COUNT(*) FROM subscriptions WHERE expiration IS NOT NULL"
        ) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def channel_counts(
        self, app_id: str, now_ms: int, partitions: queries.Partitions = None
    ) -> list[queries.ChannelCount]:
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
        async with self._conn.execute(
            "SELECT d.device_token, d.os, d.os_version, d.version,"
            " s.channel, s.registration_id, s.expiration"
            " FROM devices d JOIN subscriptions s USING (app_id, device_id)"
            " WHERE d.app_id = ? AND d.device_id = ?"
            " AND (s.expiration IS NULL OR s.expiration > ?) ORDER BY s.channel",
            (app_id, device_id, now_ms),
        ) as cursor:
            rows = list(await cursor.fetchall())
        if not rows:
            return None
        token, os_name, os_version, version = rows[0][:4]
        return DeviceView(
            app_id=app_id,
            device_id=device_id,
            device_token=token,
            os=os_name,
            os_version=os_version,
            version=version,
            channels={row[4]: (row[5], row[6]) for row in rows},
        )


def _decode(record: Record) -> AnyEvent:
    try:
        return decode_event(record.value or b"")
    except msgspec.DecodeError as exc:
        raise ProjectionError(
            f"undecodable event at {record.topic}[{record.partition}]@{record.offset}: {exc}"
        ) from exc
