"""A copy of a compacted topic is written as Kafka's compaction would leave it: a record a
later tombstone erased becomes a tombstone at its own offset (services/log/compaction.py)."""

from __future__ import annotations

import base64
import io

import msgspec

from projections.positions import Record
from services.log.archive import ArchivedRecord
from services.log.compaction import CompactingSpool, compacted, tombstones


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


def test_given_a_key_written_again_after_its_tombstone_then_the_new_value_stands() -> None:
    # Given: a device's token claim, its erasure, and the same slot claimed again (the same
    # device id registered the token again after it was forgotten)
    lines = [_line(0, b"k", b"before"), _line(1, b"k", None), _line(2, b"k", b"after")]
    spool, out = io.BytesIO(), io.BytesIO()
    held = CompactingSpool(spool)

    # When
    held.write(b"".join(lines))
    held.copy_to(out)

    # Then only what the tombstone erased is dropped
    decoded = [
        msgspec.json.decode(line, type=ArchivedRecord) for line in out.getvalue().splitlines()
    ]
    assert [(r.offset, r.value) for r in decoded] == [(0, None), (1, None), (2, b"after")]


def test_given_records_then_compacted_drops_what_a_later_tombstone_erased_below_a_bound() -> None:
    # Given one partition's records: k1 erased, k2 erased and written again, k3 kept
    log = [
        Record("t.keys", 0, 0, 1, b"k1", b"v1"),
        Record("t.keys", 0, 1, 2, b"k2", b"v2"),
        Record("t.keys", 0, 2, 3, b"k3", b"v3", (("h", b"x"),)),
        Record("t.keys", 0, 3, 4, b"k1", None),
        Record("t.keys", 0, 4, 5, b"k2", None),
        Record("t.keys", 0, 5, 6, b"k2", b"v2-again"),
    ]
    erased = tombstones(log)

    # Then each erased value is a tombstone at its offset, with its time and headers
    assert [compacted(r, erased).value for r in log] == [None, None, b"v3", None, None, b"v2-again"]
    assert compacted(log[0], erased) == Record("t.keys", 0, 0, 1, b"k1", None)
    # and below a reader's position only: what it has still to read stays as written
    assert [compacted(r, erased, below=1).value for r in log] == [
        None,
        b"v2",
        b"v3",
        None,
        None,
        b"v2-again",
    ]
