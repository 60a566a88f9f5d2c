"""Kafka positions stored beside the rows they produced, in the same transaction.

`next_offset` is where to resume; `fingerprint` identifies the last applied record, so a
store can prove the broker still holds the history it claims (docs/design.md §10).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import aiosqlite
import msgspec


class Record(msgspec.Struct, frozen=True):
    """A Kafka record, independent of the client library that fetched it."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


class Position(msgspec.Struct, frozen=True):
    topic: str
    partition: int
    next_offset: int
    fingerprint: str


def fingerprint(key: bytes | None, value: bytes | None) -> str:
    digest = hashlib.sha256()
    for part in (key, value):
        digest.update(b"\x00" if part is None else b"\x01" + len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()[:32]


def last_positions(records: Iterable[Record]) -> list[Position]:
    """The resume position after `records`, per partition (last record wins)."""
    latest: dict[tuple[str, int], Record] = {}
    for record in records:
        latest[(record.topic, record.partition)] = record
    return [
        Position(r.topic, r.partition, r.offset + 1, fingerprint(r.key, r.value))
        for r in latest.values()
    ]


async def write_positions(conn: aiosqlite.Connection, positions: Iterable[Position]) -> None:
    await conn.executemany(
        "INSERT INTO kafka_offsets (topic, partition, next_offset, fingerprint) VALUES (?,?,?,?)"
        " ON CONFLICT (topic, partition) DO UPDATE SET"
        " next_offset = excluded.next_offset, fingerprint = excluded.fingerprint"
        " WHERE excluded.next_offset > kafka_offsets.next_offset",
        [(p.topic, p.partition, p.next_offset, p.fingerprint) for p in positions],
    )


async def read_positions(conn: aiosqlite.Connection) -> list[Position]:
    async with conn.execute(
        "SELECT topic, partition, next_offset, fingerprint FROM kafka_offsets"
    ) as cursor:
        return [Position(*row) for row in await cursor.fetchall()]
