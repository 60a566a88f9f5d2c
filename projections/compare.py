"""Row-by-row comparison of two projection files: the live one and a rebuild of it.

Both are read through one connection (the rebuild as `main`, the live file attached), so
SQLite's own EXCEPT finds the rows that differ; only those come back to Python. Rows are
grouped by primary key: a row only in one file, or in both with different values.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiosqlite
import msgspec

TABLES = ("devices", "subscriptions", "channels", "device_events")
# A table whose key is a unique index, not its primary key (projections/tables.py).
INDEX_KEYS = {"device_events": ("app_id", "device_id", "version")}


class Difference(msgspec.Struct, frozen=True, kw_only=True):
    kind: str = "row"
    table: str
    key: dict[str, Any]
    live: dict[str, Any] | None  # None: the row is missing from the live projection
    rebuilt: dict[str, Any] | None  # None: the live projection has a row the log does not


async def _columns(conn: aiosqlite.Connection, schema: str, table: str) -> list[tuple[str, int]]:
    """(name, position in the primary key, 0 if none) of each column."""
    async with conn.execute(f"PRAGMA {schema}.table_info({table})") as cursor:
        return [(row[1], row[5]) for row in await cursor.fetchall()]


async def _except(
    conn: aiosqlite.Connection, columns: str, table: str, first: str, second: str
) -> list[tuple[Any, ...]]:
    async with conn.execute(
        f"SELECT {columns} FROM {first}.{table} EXCEPT SELECT {columns} FROM {second}.{table}"
    ) as cursor:
        return [tuple(row) for row in await cursor.fetchall()]


async def differences(
    conn: aiosqlite.Connection, live: str = "live", rebuilt: str = "main"
) -> AsyncIterator[Difference]:
    """Every differing row of TABLES between the schemas `live` and `rebuilt` of `conn`."""
    for table in TABLES:
        wanted = await _columns(conn, rebuilt, table)
        found = await _columns(conn, live, table)
        if wanted != found:
            yield Difference(
                table=table,
                key={},
                live={"columns": [name for name, _ in found]},
                rebuilt={"columns": [name for name, _ in wanted]},
            )
            continue
        names = [name for name, _ in wanted]
        key_names = [name for name, pk in sorted(wanted, key=lambda c: c[1]) if pk] or list(
            INDEX_KEYS[table]
        )
        columns = ", ".join(f'"{name}"' for name in names)
        only: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
        for side, first, second in (("live", live, rebuilt), ("rebuilt", rebuilt, live)):
            rows = await _except(conn, columns, table, first, second)
            values = (dict(zip(names, row, strict=True)) for row in rows)
            only[side] = {tuple(v[k] for k in key_names): v for v in values}
        for key in sorted(only["live"].keys() | only["rebuilt"].keys(), key=repr):
            yield Difference(
                table=table,
                key=dict(zip(key_names, key, strict=True)),
                live=only["live"].get(key),
                rebuilt=only["rebuilt"].get(key),
            )
