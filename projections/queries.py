"""Targeting queries for publishers: channels with counts, and the devices on a channel.

Subscriptions whose expiration has passed are filtered out here, so a query is right even in
the moment before the expiry event lands. Pages are keyset-paged on device id (stable order,
constant cost per page whatever the depth).
"""

from __future__ import annotations

import aiosqlite
import msgspec


class ChannelCount(msgspec.Struct, frozen=True):
    channel: str
    devices: int
    createdAt: int


class ChannelDevice(msgspec.Struct, frozen=True):
    deviceId: str
    deviceToken: str
    os: str
    osVersion: str
    registrationId: str
    expiration: int | None


Partitions = frozenset[int] | None  # the partitions a worker serves; None: all of them


def in_partitions(column: str, partitions: Partitions) -> str:
    """SQL restricting rows to the worker's partitions (integers only: safe to inline)."""
    if partitions is None:
        return ""
    return f" AND {column} IN ({','.join(str(int(p)) for p in sorted(partitions)) or 'NULL'})"


async def channel_counts(
    conn: aiosqlite.Connection, app_id: str, now_ms: int, partitions: Partitions = None
) -> list[ChannelCount]:
    async with conn.execute(
        "SELECT c.channel, COUNT(s.device_id), c.created_at FROM channels c"
        " LEFT JOIN subscriptions s ON s.app_id = c.app_id AND s.channel = c.channel"
        " AND (s.expiration IS NULL OR s.expiration > ?)"
        f"{in_partitions('s.partition', partitions)}"
        " WHERE c.app_id = ? GROUP BY c.channel ORDER BY c.channel",
        (now_ms, app_id),
    ) as cursor:
        return [ChannelCount(*row) for row in await cursor.fetchall()]


async def channel_devices(
    conn: aiosqlite.Connection,
    app_id: str,
    channel: str,
    now_ms: int,
    after: str,
    limit: int,
    os_name: str | None = None,
    partitions: Partitions = None,
) -> list[ChannelDevice]:
    """Up to `limit` devices on `channel` with device id > `after`, in device id order."""
    os_filter = " AND d.os = ?" if os_name else ""
    params: tuple[object, ...] = (app_id, channel, after, now_ms)
    if os_name:
        params += (os_name,)
    async with conn.execute(
        "SELECT s.device_id, d.device_token, d.os, d.os_version, s.registration_id, s.expiration"
        " FROM subscriptions s INDEXED BY subscriptions_by_channel"
        " JOIN devices d ON d.app_id = s.app_id AND d.device_id = s.device_id"
        " WHERE s.app_id = ? AND s.channel = ? AND s.device_id > ?"
        f" AND (s.expiration IS NULL OR s.expiration > ?){os_filter}"
        f"{in_partitions('s.partition', partitions)}"
        " ORDER BY s.device_id LIMIT ?",
        (*params, limit),
    ) as cursor:
        return [ChannelDevice(*row) for row in await cursor.fetchall()]


async def device_history(
    conn: aiosqlite.Connection, app_id: str, device_id: str, after_version: int, limit: int
) -> list[bytes]:
    """The device's applied events (canonical JSON) with version > `after_version`, in order."""
    async with conn.execute(
        "SELECT event FROM device_events WHERE app_id = ? AND device_id = ? AND version > ?"
        " ORDER BY version LIMIT ?",
        (app_id, device_id, after_version, limit),
    ) as cursor:
        return [row[0] for row in await cursor.fetchall()]


async def device_history_until(
    conn: aiosqlite.Connection, app_id: str, device_id: str, until_ms: int
) -> list[bytes]:
    """The device's events up to the first one that happened after `until_ms`.

    Versions, not times, order a history: a command may carry an earlier time than the one
    before it, so the history is cut at its first event after the instant."""
    async with conn.execute(
        "SELECT occurred_at, event FROM device_events WHERE app_id = ? AND device_id = ?"
        " ORDER BY version",
        (app_id, device_id),
    ) as cursor:
        rows = await cursor.fetchall()
    kept: list[bytes] = []
    for occurred_at, event in rows:
        if occurred_at > until_ms:
            break
        kept.append(event)
    return kept
