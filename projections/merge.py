"""Merging projection files folded from disjoint sets of partitions into one.

A parallel rebuild (services/rebuild/parallel.py) folds each set of partitions into its own
file. Every device's events are in one partition (docs/design.md §2), so the files hold disjoint
devices, subscriptions, history and positions: their rows are simply copied. A channel may
be announced on several partitions; its earliest time stands, the fold's own rule
(projections/fold.py `_channel_created`). A duplicate key anywhere else means the files were
not folded from disjoint partitions, and the merge fails on it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from projections.sqlite import ALONE, BULK_PRAGMAS
from projections.tables import HISTORY_INDEX_DDL

# Every table of the schema, with how a part's rows join the target's. `SELECT *` (the files
# share the schema, column order included) lets SQLite copy the history's records as they
# are, without decoding them (its transfer optimisation, for a table without indexes).
COPIES = {
    "devices": "INSERT INTO devices SELECT * FROM part.devices",
    "subscriptions": "INSERT INTO subscriptions SELECT * FROM part.subscriptions",
    "channels": "INSERT INTO channels SELECT * FROM part.channels WHERE true"
    " ON CONFLICT (app_id, channel) DO UPDATE SET"
    " created_at = min(created_at, excluded.created_at)",
    "device_events": "INSERT INTO device_events SELECT * FROM part.device_events",
    "kafka_offsets": "INSERT INTO kafka_offsets SELECT * FROM part.kafka_offsets",
}


class MergeError(RuntimeError):
    """The files cannot be merged (another schema, or rows that are not disjoint)."""


def tables(db: sqlite3.Connection, schema: str = "main") -> set[str]:
    rows = db.execute(f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table'")
    return {name for (name,) in rows}


def merge_into(target: Path, parts: Sequence[Path]) -> None:
    """Copy the rows of `parts` into `target` (all of one schema), a transaction per part, then
    build the history's unique index, which a rebuild's parts leave out (services/rebuild/build.py).
    Like the files of a rebuild, `target` gets no journal: the caller throws a failed merge
    away. (Built here rather than when the store opens the file in WAL mode: 0.5 s instead of
    1.5 s at 1M events, the index's pages written once.)"""
    with contextlib.closing(sqlite3.connect(target, isolation_level=None)) as db:
        for pragma in (*BULK_PRAGMAS, ALONE):
            db.execute(pragma).fetchall()
        unknown = tables(db) - set(COPIES)
        if unknown:
            raise MergeError(f"{target}: no merge rule for the tables {sorted(unknown)}")
        for part in parts:
            db.execute("ATTACH DATABASE ? AS part", (str(part),))
            db.execute("BEGIN")
            if tables(db, "part") != tables(db):
                raise MergeError(f"{part} and {target} do not have the same tables")
            for table, sql in COPIES.items():
                try:
                    db.execute(sql)
                except sqlite3.IntegrityError as exc:
                    raise MergeError(f"{part}: its {table} overlap {target}'s: {exc}") from exc
            db.execute("COMMIT")  # DETACH is refused inside a transaction
            db.execute("DETACH DATABASE part")
        db.execute(HISTORY_INDEX_DDL)
