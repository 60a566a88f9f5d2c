"""The kept log's files (services/log/segments.py), on real files in a temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from projections.positions import Record
from services.log.segments import INDEX_EVERY, SegmentGap, SegmentLog


def records(start: int, stop: int, topic: str = "t", partition: int = 0) -> list[Record]:
    headers = (("h", b"x"),)
    return [
        Record(topic, partition, n, 1000 + n, b"k%d" % n, b"v" * (n % 50), headers if n % 3 else ())
        for n in range(start, stop)
    ]


def read_all(log: SegmentLog, start: int = 0, stop: int | None = None) -> list[Record]:
    return [r for batch in log.read("t", 0, start, stop, max_records=700) for r in batch]


def test_given_appends_then_read_back_from_any_offset_as_written(tmp_path: Path) -> None:
    # Given records appended in several calls, across index entries
    log = SegmentLog(tmp_path)
    written = records(0, 3 * INDEX_EVERY + 5)
    for n in range(0, len(written), 333):
        log.append(written[n : n + 333])

    # Then every read gives the records as written, headers and all, from anywhere
    assert log.end("t", 0) == len(written)
    assert read_all(log) == written
    assert (
        read_all(log, INDEX_EVERY + 7, 2 * INDEX_EVERY + 3)
        == written[INDEX_EVERY + 7 : 2 * INDEX_EVERY + 3]
    )
    assert log.record_at("t", 0, 2 * INDEX_EVERY) == written[2 * INDEX_EVERY]
    assert log.record_at("t", 0, len(written)) is None
    log.close()
    # and after opening the directory again
    again = SegmentLog(tmp_path)
    assert again.ends() == {("t", 0): len(written)}
    assert read_all(again) == written
    again.close()


def test_given_records_below_the_end_then_skipped_and_a_gap_refused(tmp_path: Path) -> None:
    log = SegmentLog(tmp_path)
    log.append(records(0, 10))
    # a batch decided again after a crash: what is there already is skipped
    assert log.append(records(5, 12)) == 2
    # a gap is refused, and nothing of that partition appended
    with pytest.raises(SegmentGap) as gap:
        log.append(records(13, 15))
    assert (gap.value.end, gap.value.first) == (12, 13)
    assert log.end("t", 0) == 12
    log.close()


def test_given_a_gap_inside_a_batch_then_the_run_before_it_is_appended(tmp_path: Path) -> None:
    # Given a batch whose records of one partition continue the segment, then jump (the
    # processor's sealed copies of raw commands land after commands not decided yet)
    log = SegmentLog(tmp_path)
    log.append(records(0, 10))
    batch = [*records(8, 13), *records(20, 22), *records(0, 3, partition=1)]

    # When appended
    appended, gaps = log.append_continuing(batch)

    # Then what continues each partition is appended, and the gap is where it stops
    assert appended == {("t", 0): 3, ("t", 1): 3}
    assert [(g.partition, g.end, g.first) for g in gaps] == [(0, 13, 20)]
    # and once the gap is filled, the rest of the batch continues it
    log.append(records(13, 20))
    assert log.append_continuing(batch) == ({("t", 0): 2, ("t", 1): 0}, [])
    assert read_all(log) == records(0, 22)
    log.close()


def test_given_a_torn_end_when_opened_then_cut_off_and_appended_after(tmp_path: Path) -> None:
    # Given a segment whose last frame was cut short (a power cut mid-write)
    log = SegmentLog(tmp_path)
    log.append(records(0, 2 * INDEX_EVERY + 1))
    log.close()
    path = tmp_path / "t.0.seg"
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size - 3)

    # When a reader opens it beside the writer, it cuts nothing
    reader = SegmentLog(tmp_path, readonly=True)
    assert reader.end("t", 0) == 2 * INDEX_EVERY
    size = path.stat().st_size
    # When the writer opens it, the torn frame (and its index entry) are cut off
    log = SegmentLog(tmp_path)
    assert path.stat().st_size < size
    assert log.end("t", 0) == 2 * INDEX_EVERY
    log.append(records(2 * INDEX_EVERY, 2 * INDEX_EVERY + 10))
    assert read_all(log) == records(0, 2 * INDEX_EVERY + 10)
    # and the reader sees the new records once it looks again
    segment = reader.segment("t", 0)
    segment.refresh()
    assert segment.end == 2 * INDEX_EVERY + 10
    log.close()
    reader.close()


def test_given_a_damaged_frame_when_opened_then_the_end_is_cut_there(tmp_path: Path) -> None:
    log = SegmentLog(tmp_path)
    log.append(records(0, 20))
    log.close()
    path = tmp_path / "t.0.seg"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # the last record's payload: its CRC no longer matches
    path.write_bytes(bytes(data))
    log = SegmentLog(tmp_path)
    assert log.end("t", 0) == 19
    assert read_all(log) == records(0, 19)
    log.close()
