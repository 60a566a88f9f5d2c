"""Loading the stored rows of the devices a batch touches: one indexed lookup per device."""

from __future__ import annotations

from collections.abc import Iterable

import aiosqlite

from projections.fold import DeviceKey, DeviceRow

_LOOKUP_CHUNK = 400  # keys per query, well under SQLite's variable limit
_FIELDS = DeviceRow.__struct_fields__


async def load_device_rows(
    conn: aiosqlite.Connection, keys: Iterable[DeviceKey]
) -> dict[DeviceKey, DeviceRow]:
    known: dict[DeviceKey, DeviceRow] = {}
    ordered = sorted(keys)
    for start in range(0, len(ordered), _LOOKUP_CHUNK):
        chunk = ordered[start : start + _LOOKUP_CHUNK]
        values = ",".join("(?,?)" for _ in chunk)
        # A join with the keys as a VALUES table: SQLite (3.40) answers the plainer
        # `(app_id, device_id) IN (...)` with a scan of the whole table, which made every
        # batch of the projector (and each rebuild batch) slower as the registry grew.
        async with conn.execute(
            f"SELECT {', '.join('d.' + name for name in _FIELDS)}"
            f" FROM (VALUES {values}) AS k JOIN devices d"
            " ON d.app_id = k.column1 AND d.device_id = k.column2",
            [part for key in chunk for part in key],
        ) as cursor:
            for row in await cursor.fetchall():
                device = DeviceRow(**dict(zip(_FIELDS, row, strict=True)))
                known[(device.app_id, device.device_id)] = device
    return known
