"""Writing a compacted topic into an archive the way Kafka's compaction would leave it.

The embedded broker never compacts (docs/design.md §10), so the keys and tokens topics keep
an erased data key, and a forgotten device's fingerprints, until it stops. An archive must not
carry them on: a record whose key a later tombstone of the same partition erased is written as
a tombstone itself (key kept, value dropped), at its own offset, so an import still puts every
record where it was. The records are spooled to a temporary file meanwhile: only the erased
keys are held in memory.
"""

from __future__ import annotations

from typing import IO

import msgspec


class _Identity(msgspec.Struct):
    """The fields of an archived record that compaction looks at (key and value as the
    archive's base64 text)."""

    topic: str
    partition: int
    key: str | None = None
    value: str | None = None


_identity = msgspec.json.Decoder(_Identity)
_line = msgspec.json.Decoder(dict[str, object])
_encoder = msgspec.json.Encoder()


class CompactingSpool:
    def __init__(self, spool: IO[bytes]):
        self._spool = spool
        self._erased: set[tuple[str, int, str | None]] = set()

    def write(self, lines: bytes) -> None:
        """Archive lines (NDJSON), in each partition's order."""
        self._spool.write(lines)
        for r in _identity.decode_lines(lines):
            if r.value is None:
                self._erased.add((r.topic, r.partition, r.key))

    def copy_to(self, out: IO[bytes]) -> None:
        self._spool.seek(0)
        for line in self._spool:
            r = _identity.decode(line)
            if r.value is not None and (r.topic, r.partition, r.key) in self._erased:
                record = _line.decode(line)
                record["value"] = None
                line = _encoder.encode(record) + b"\n"
            out.write(line)
