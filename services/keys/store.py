"""The worker's key store: the data keys of its partitions' devices, in SQLite.

Kept apart from every other store, and written so that a deleted key does not linger in the
file: `secure_delete` overwrites deleted content in the database, and after an erasure the
WAL, whose old frames still hold the pages as they were, is checkpointed and truncated to
nothing (`erase_traces`). Keys are stored wrapped with the key-encryption key, as on the keys
topic.

Commits are not fsynced (WAL, `synchronous=NORMAL`, as every worker store): a key is durable
once the keys topic acknowledged it (and, in the embedded mode, the kept log holds it), and
this file is a copy of the topic's partitions, read from the topic whenever the worker is
handed a partition, which is at every start (services/keys/keyring.py): again from 0 on
Apache Kafka, on from its positions in the embedded mode. A commit survives a SIGKILL
either way; one a power cut loses is read back from the topic (positions commit with or
after the keys they cover, so a lost commit only moves the read back). An fsync per group of
new keys blocked the event loop for ~0.4 ms on this machine.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import aiosqlite
import msgspec

from projections.positions import Position, read_positions, write_positions
from projections.sqlite import joined_rows, open_db

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS device_keys (
    app_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    partition INTEGER NOT NULL,
    wrapped BLOB NOT NULL,
    PRIMARY KEY (app_id, device_id, key_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS device_keys_by_partition ON device_keys (partition);
"""
# After open_db's pragmas (WAL, synchronous=NORMAL): see the module docstring.
_ERASING_PRAGMAS = ("PRAGMA secure_delete=ON",)


class StoredKey(msgspec.Struct, frozen=True):
    app_id: str
    device_id: str
    key_id: str
    partition: int
    wrapped: bytes


Slot = tuple[str, str, str]  # (app id, device id, key id)
Device = tuple[str, str]  # (app id, device id)


def _age(key: StoredKey) -> tuple[int, str]:
    """Orders a device's keys oldest first: key ids begin with their creation time."""
    return int(key.key_id.partition("-")[0]), key.key_id


class KeyStore:
    def __init__(self, conn: aiosqlite.Connection):
        self._conn = conn
        # Positions the keyring's own writes reached (services/keys/applied.py), claimed with
        # the next transaction or as the store closes: no transaction of their own.
        self._due: dict[tuple[str, int], Position] = {}

    @classmethod
    async def open(cls, path: Path) -> KeyStore:
        conn = await open_db(path, SCHEMA, SCHEMA_VERSION, checkpoints_apart=True)
        for pragma in _ERASING_PRAGMAS:
            await conn.execute(pragma)
        return cls(conn)

    async def close(self) -> None:
        try:
            if self._due:
                await self.write(())
        finally:
            await self._conn.close()

    def advance(self, positions: Iterable[Position]) -> None:
        """Positions whose records' effects the store holds already: written with its next
        transaction, or as it closes."""
        self._due.update(((p.topic, p.partition), p) for p in positions)

    async def positions(self) -> list[Position]:
        return await read_positions(self._conn)

    async def keys_of(self, app_id: str, device_id: str) -> list[StoredKey]:
        """The device's keys, oldest first."""
        async with self._conn.execute(
            "SELECT app_id, device_id, key_id, partition, wrapped FROM device_keys"
            " WHERE app_id = ? AND device_id = ?",
            (app_id, device_id),
        ) as cursor:
            rows = [StoredKey(*row) for row in await cursor.fetchall()]
        return sorted(rows, key=_age)

    async def newest_keys(self, devices: Iterable[Device]) -> dict[Device, StoredKey]:
        """Each device's newest key, for many devices in one query per chunk: a burst of new
        devices asks once per group instead of once per device."""
        found: dict[Device, StoredKey] = {}
        rows = await joined_rows(
            self._conn,
            "SELECT t.app_id, t.device_id, t.key_id, t.partition, t.wrapped"
            " FROM (VALUES {values}) AS k JOIN device_keys t"
            " ON t.app_id = k.column1 AND t.device_id = k.column2",
            devices,
        )
        for row in rows:
            key = StoredKey(*row)
            device = (key.app_id, key.device_id)
            held = found.get(device)
            if held is None or _age(key) > _age(held):
                found[device] = key
        return found

    async def write(
        self,
        added: Iterable[StoredKey],
        removed: Iterable[Slot] = (),
        positions: Iterable[Position] = (),
    ) -> None:
        """One transaction: keys added, keys removed, and the keys topic's positions (with
        those due from `advance`; a position never moves back)."""
        conn = self._conn
        due, self._due = self._due, {}
        due.update(((p.topic, p.partition), p) for p in positions)
        try:
            await conn.execute("BEGIN")
            await conn.executemany(
                "INSERT OR REPLACE INTO device_keys (app_id, device_id, key_id, partition,"
                " wrapped) VALUES (?,?,?,?,?)",
                [msgspec.structs.astuple(k) for k in added],
            )
            await conn.executemany(
                "DELETE FROM device_keys WHERE app_id = ? AND device_id = ? AND key_id = ?",
                list(removed),
            )
            await write_positions(conn, due.values())
            await conn.commit()
        except BaseException:
            await conn.rollback()
            raise

    async def erase_traces(self) -> None:
        """After keys were deleted: the WAL's copies of their pages go too."""
        await self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def forget_partitions(self, topic: str, partitions: Iterable[int]) -> None:
        """Drop what is held of partitions handed over from another worker: they are read
        again from the keys topic, so no key erased meanwhile survives here."""
        chosen = sorted(set(partitions))
        conn = self._conn
        try:
            await conn.execute("BEGIN")
            await conn.executemany(
                "DELETE FROM device_keys WHERE partition = ?", [(p,) for p in chosen]
            )
            await conn.executemany(
                "DELETE FROM kafka_offsets WHERE topic = ? AND partition = ?",
                [(topic, p) for p in chosen],
            )
            await conn.commit()
        except BaseException:
            await conn.rollback()
            raise
