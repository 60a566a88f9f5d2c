"""Copying a compacted topic the way Kafka's compaction would leave it.

The embedded broker never compacts (docs/design.md §10), so the keys and tokens topics keep
an erased data key, and a forgotten device's fingerprints, as long as it runs. No copy devreg
makes may carry them on: a record whose key a later tombstone of the same partition erased is
copied as a tombstone itself (key kept, value dropped), at its own offset, so every record
still lands where it was. A value written after the tombstone stands (the key was written
again). Archives do it here (`CompactingSpool`); the embedded mode's kept log and what it
gives the broker do it with `tombstones` and `compacted` (services/log/kept_compaction.py,
services/log/restore.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import IO

import msgspec

from projections.positions import Record

Tombstones = Mapping[bytes | None, int]  # a key -> the offset of its last tombstone


def tombstones(records: Iterable[Record]) -> dict[bytes | None, int]:
    """Each key's last tombstone among `records` (one partition's)."""
    return {r.key: r.offset for r in records if r.value is None}


def compacted(record: Record, erased: Tombstones, below: int | None = None) -> Record:
    """`record` as compaction leaves it: a tombstone if a later tombstone of its key erased
    it (only below offset `below`, where given: a reader still has to read the rest as it
    was written)."""
    if record.value is None or erased.get(record.key, -1) <= record.offset:
        return record
    if below is not None and record.offset >= below:
        return record
    return msgspec.structs.replace(record, value=None)


def bound(floor: int | None) -> int | None:
    """Where compaction stops for a partition a store reads from `floor` (None: no store
    reads it): below the record the store's position names (floor - 1), which the store is
    checked against by its fingerprint at every start (services/log/store_check.py). A
    record a tombstone the store has folded erased lies below that anyway."""
    return None if floor is None else max(floor - 1, 0)


class _Identity(msgspec.Struct):
    """The fields of an archived record that compaction looks at (key and value as the
    archive's base64 text)."""

    topic: str
    partition: int
    offset: int
    key: str | None = None
    value: str | None = None


_identity = msgspec.json.Decoder(_Identity)
_line = msgspec.json.Decoder(dict[str, object])
_encoder = msgspec.json.Encoder()


class CompactingSpool:
    def __init__(self, spool: IO[bytes]):
        self._spool = spool
        # (topic, partition, key) -> the offset of its last tombstone
        self._erased: dict[tuple[str, int, str | None], int] = {}

    def write(self, lines: bytes) -> None:
        """Archive lines (NDJSON), in each partition's order."""
        self._spool.write(lines)
        for r in _identity.decode_lines(lines):
            if r.value is None:
                self._erased[(r.topic, r.partition, r.key)] = r.offset

    def copy_to(self, out: IO[bytes]) -> None:
        self._spool.seek(0)
        for line in self._spool:
            r = _identity.decode(line)
            if r.value is not None and self._erased.get((r.topic, r.partition, r.key), -1) > (
                r.offset
            ):
                record = _line.decode(line)
                record["value"] = None
                line = _encoder.encode(record) + b"\n"
            out.write(line)
