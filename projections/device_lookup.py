"""GET by device id: the hottest query, answered on a plain sqlite3 connection.

A point lookup takes tens of microseconds; a trip through aiosqlite's thread costs more than
that in handoffs (two loop wake-ups and a thread switch per query). So the lookup runs
synchronously on the event loop, on a connection of its own: in WAL mode it reads the last
committed state without waiting for, or blocking, the projector's writes. Measured by
`python -m bench --only get` (docs/benchmarks.md).

The connection is closed while `devreg rebuild` swaps the file (projections/swap.py needs the
live file to itself for a moment) and reopened on the new file; meanwhile lookups go through
the store's aiosqlite connection.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import msgspec

log = logging.getLogger(__name__)

SQL = (
    "SELECT d.device_token, d.os, d.os_version, d.version,"
    " s.channel, s.registration_id, s.expiration"
    " FROM devices d JOIN subscriptions s USING (app_id, device_id)"
    " WHERE d.app_id = ? AND d.device_id = ?"
    " AND (s.expiration IS NULL OR s.expiration > ?) ORDER BY s.channel"
)


class DeviceView(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str
    device_id: str
    device_token: str
    os: str
    os_version: str
    version: int
    channels: dict[str, tuple[str, int | None]]  # channel -> (registration id, expiration)


def view_of(app_id: str, device_id: str, rows: list[Any]) -> DeviceView | None:
    """The device with its active channels from SQL's rows; None when it has none."""
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


class DeviceReader:
    """SQL on a synchronous connection, or None while it is closed (then ask aiosqlite)."""

    def __init__(self, path: Path):
        self._path = path
        self._conn: sqlite3.Connection | None = None

    def open(self) -> None:
        self.close()
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")  # this connection never writes
            conn.execute("PRAGMA busy_timeout=100")
        except sqlite3.Error as exc:
            log.warning("device lookups go through aiosqlite: cannot open %s: %s", self._path, exc)
            return
        self._conn = conn

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def rows(self, app_id: str, device_id: str, now_ms: int) -> list[Any] | None:
        if self._conn is None:
            return None
        return self._conn.execute(SQL, (app_id, device_id, now_ms)).fetchall()
