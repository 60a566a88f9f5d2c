"""An archive of a compacted topic is written as Kafka's compaction would leave it: a record a
later tombstone erased becomes a tombstone at its own offset (services/log/compaction.py)."""

from __future__ import annotations

import base64
import io

import msgspec

from services.log.archive import ArchivedRecord
from services.log.compaction import CompactingSpool


def _line(offset: int, key: bytes, value: bytes | None, partition: int = 0) -> bytes:
    record = ArchivedRecord("t.keys", partition, offset, 1000 + offset, key, value, ())
    return msgspec.json.encode(record) + b"\n"


def test_given_a_key_and_its_tombstone_then_the_key_is_written_as_a_tombstone() -> None:
    # Given: k1 written then erased; k2 written; k1 on another partition never erased
    lines = [
        _line(0, b"k1", b"secret-1"),
        _line(1, b"k2", b"secret-2"),
        _line(2, b"k1", None),
        _line(0, b"k1", b"elsewhere", partition=1),
    ]
    spool, out = io.BytesIO(), io.BytesIO()
    held = CompactingSpool(spool)

    # When
    held.write(b"".join(lines[:2]))
    held.write(b"".join(lines[2:]))
    held.copy_to(out)

    # Then: every offset is there, k1's value is gone, the rest is as it was
    decoded = [
        msgspec.json.decode(line, type=ArchivedRecord) for line in out.getvalue().splitlines()
    ]
    assert [(r.partition, r.offset, r.key, r.value) for r in decoded] == [
        (0, 0, b"k1", None),
        (0, 1, b"k2", b"secret-2"),
        (0, 2, b"k1", None),
        (1, 0, b"k1", b"elsewhere"),
    ]
    assert base64.b64encode(b"secret-1") not in out.getvalue()  # as an archive writes bytes
    assert decoded[0].timestamp == 1000  # the rest of the record kept
