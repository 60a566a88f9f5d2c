"""Compacting the kept log's copies of the compacted topics, in place.

The keys topic carries each device's data key, wrapped with the key-encryption key, and a
tombstone once the device is forgotten; the tokens topic carries token fingerprints (docs/
design.md §12). The embedded mode keeps them in its segment files like any topic
(services/log/segments.py), so an erasure must reach those files too, or the data directory
would hold a forgotten device's key for good. Once a tombstone is kept, every earlier record
with its key is overwritten, at its own offset, by a tombstone of exactly the same length
(services/log/frames.py): no offset or file position moves, readers beside the writer go on
reading, and the record's time and headers stay. The same rule as an archive's
(services/log/compaction.py).

Cost: each partition has a mark, the offset below which every tombstone has been applied
(`<topic>.<partition>.compacted` beside the segment). A run reads the records from the mark
for tombstones, and only if it finds some reads the partition from its start for the records
they erase. It runs at start-up (services/log/recovery.py) and in the background once the
journal has kept a tombstone (services/log/rollover.py).

A bound per partition (`below`) leaves records at and past it as they were written: the
token index folds the tokens topic from its own position, and a claim turned into a
tombstone before the index folded it would no longer supersede the token's older holder. A
later run compacts them once the index has passed them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

from services.log import compaction, frames
from services.log.frames import FRAME
from services.log.segments import Segment, SegmentLog

log = logging.getLogger(__name__)
TP = tuple[str, int]


def mark_path(segment: Segment) -> Path:
    return segment.path.with_suffix(".compacted")


def read_mark(segment: Segment) -> int:
    path = mark_path(segment)
    try:
        return max(int(path.read_text().strip() or 0), segment.start)
    except (FileNotFoundError, ValueError):
        return segment.start


def _write_mark(segment: Segment, offset: int) -> None:
    path = mark_path(segment)
    part = path.with_name(path.name + ".part")
    part.write_text(f"{offset}\n")
    os.replace(part, path)


def _frames(path: Path, position: int, size: int, stop: int) -> Iterator[tuple[int, int, bytes]]:
    """(offset, position, payload) of each frame from `position`, below offset `stop` and
    file position `size` (what was whole when the run began)."""
    with open(path, "rb") as f:
        f.seek(position)
        while position + FRAME.size <= size:
            length, offset, _ = FRAME.unpack(f.read(FRAME.size))
            if offset >= stop:
                return
            payload = f.read(length)
            yield offset, position, payload
            position += FRAME.size + length


def compact(segment: Segment, end: int, size: int, below: int | None = None) -> int:
    """Apply the tombstones from the segment's mark up to `end` to the records before them
    (only those below `below`, where given); return how many records were erased. `end`
    and `size` are the segment's when the caller looked (appends may go on meanwhile: a
    run in a thread only reads and overwrites what lay below them)."""
    mark = read_mark(segment)
    limit = end if below is None else min(end, below)
    erasing: dict[bytes | None, int] = {}
    for offset, _, payload in _frames(segment.path, segment.locate(mark), size, end):
        if offset >= mark:
            p = frames.decode(payload)
            if p.value is None:
                erasing[p.key] = offset
    erased = 0
    if erasing:
        fd = os.open(segment.path, os.O_WRONLY)
        try:
            # From the file's start: a tombstone may erase a record of any age.
            stop = min(limit, max(erasing.values()))
            for offset, position, payload in _frames(segment.path, 0, size, stop):
                p = frames.decode(payload)
                if p.value is None or erasing.get(p.key, -1) <= offset:
                    continue
                stone = frames.tombstone(payload)
                os.pwrite(fd, frames.header(offset, stone) + stone, position)
                erased += 1
            if erased:
                os.fsync(fd)
        finally:
            os.close(fd)
    if limit > mark:
        _write_mark(segment, limit)
    if erased:
        log.info("erased %d records of %s below offset %d", erased, segment.path.name, limit)
    return erased


def snapshot(segments: SegmentLog, topics: Collection[str]) -> list[tuple[Segment, int, int]]:
    """The segments of `topics` with their end and size now: what a run may compact (taken
    where the journal appends, handed to a run in a thread)."""
    return [
        (segments.segment(*tp), segments.segment(*tp).end, segments.segment(*tp).size)
        for tp in sorted(segments.ends())
        if tp[0] in topics
    ]


def compact_all(parts: list[tuple[Segment, int, int]], floors: Mapping[TP, int]) -> int:
    """`compact` each part, bounded by the position of the store that reads it, if any."""
    return sum(
        compact(
            segment, end, size, compaction.bound(floors.get((segment.topic, segment.partition)))
        )
        for segment, end, size in parts
    )
