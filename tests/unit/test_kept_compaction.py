"""The kept log's compacted topics compacted in place (services/log/kept_compaction.py), on
real segment files: an erased record becomes a tombstone of the same length at its offset."""

from __future__ import annotations

from pathlib import Path

import msgspec

from projections.positions import Record
from services.log import frames
from services.log.kept_compaction import compact, compact_all, read_mark, snapshot
from services.log.segments import INDEX_EVERY, SegmentLog

TOPIC = "t.keys"


def key_record(offset: int, key: bytes, value: bytes | None) -> Record:
    return Record(TOPIC, 0, offset, 1000 + offset, key, value, (("h", b"x"),))


def test_given_any_value_size_then_its_tombstone_frame_is_exactly_as_long() -> None:
    sizes = [*range(0, 600), *range(65_530, 65_545), 70_000]
    for size in sizes:
        for key in (None, b"k", b"k" * 300):
            record = Record(TOPIC, 0, 7, 123, key, b"v" * size, (("h", b"x"),))
            payload = frames.frame(record)[frames.FRAME.size :]
            stone = frames.tombstone(payload)
            assert len(stone) == len(payload), (size, key)
            p = frames.decode(stone)
            assert (p.timestamp, p.key, p.value, p.headers) == (123, key, None, (("h", b"x"),))


def test_given_tombstones_kept_then_earlier_values_of_their_keys_are_erased_in_place(
    tmp_path: Path,
) -> None:
    # Given a keys partition: many keys across index entries, two of them erased later, one
    # of those written again after its tombstone
    log = SegmentLog(tmp_path)
    written = [key_record(n, b"k%d" % n, b"secret-%d." % n) for n in range(2 * INDEX_EVERY)]
    end = len(written)
    written += [
        key_record(end, b"k5", None),
        key_record(end + 1, b"k1500", None),
        key_record(end + 2, b"k5", b"again"),
    ]
    log.append(written)
    segment = log.segment(TOPIC, 0)
    size = segment.path.stat().st_size

    # When compacted
    erased = compact_all(snapshot(log, [TOPIC]), {})

    # Then exactly the two erased values are tombstones now, in place: same offsets, same
    # file size, times and headers kept; the value after the tombstone stands
    assert erased == 2
    assert segment.path.stat().st_size == size
    after = [r for batch in log.read(TOPIC, 0, 0) for r in batch]
    expected = [
        msgspec.structs.replace(r, value=None) if r.offset in (5, 1500) else r for r in written
    ]
    assert after == expected
    assert b"secret-5." not in segment.path.read_bytes()
    assert b"secret-1500." not in segment.path.read_bytes()
    assert b"secret-4." in segment.path.read_bytes()
    # and the file opens again whole (no frame looks damaged), the mark past the end
    log.close()
    again = SegmentLog(tmp_path)
    assert [r for batch in again.read(TOPIC, 0, 0) for r in batch] == expected
    assert read_mark(again.segment(TOPIC, 0)) == end + 3
    # and a run with no tombstone past the mark reads nothing more and changes nothing
    assert compact_all(snapshot(again, [TOPIC]), {}) == 0
    again.close()


def test_given_a_bound_then_records_at_and_past_it_wait_for_a_later_run(tmp_path: Path) -> None:
    # Given a tokens partition whose reader has folded up to offset 2
    log = SegmentLog(tmp_path)
    log.append(
        [
            key_record(0, b"a", b"claim-a"),
            key_record(1, b"b", b"claim-b"),
            key_record(2, b"b", b"release-b"),
            key_record(3, b"a", None),
            key_record(4, b"b", None),
        ]
    )
    segment = log.segment(TOPIC, 0)

    # When compacted below the reader's position, then again once it has read everything
    first = compact(segment, segment.end, segment.size, below=2)
    values = [r.value for batch in log.read(TOPIC, 0, 0) for r in batch]
    second = compact(segment, segment.end, segment.size, below=5)

    # Then the first run erased only what the reader had passed, the second the rest
    assert (first, values) == (2, [None, None, b"release-b", None, None])
    assert second == 1
    assert [r.value for batch in log.read(TOPIC, 0, 0) for r in batch] == [None] * 5
    log.close()
