"""devreg's own copy of the embedded broker's log: one append-only file per partition.

The embedded broker keeps its log in memory and lists every stored batch on a fetch
(docs/design.md §10), so in embedded mode the log that survives is this one: the command
processor appends every record of a decided batch here, exactly as Kafka acknowledged it
(offset, time, key, value, headers), before it commits the batch (services/log/journal.py).
The broker then only needs to hold a tail of it (services/log/restore.py).

A partition's file is a run of frames (services/log/frames.py), offsets contiguous: a frame
header (payload length, offset, CRC-32 of the payload) and a msgpack payload. Frames are only
ever appended, except that the compaction of a compacted topic overwrites a record with a
tombstone of the same length (services/log/kept_compaction.py). Every INDEX_EVERY-th offset has an
entry (offset, file position) in a side file, so a read can start anywhere without a scan.
Opening a partition checks the frames after the last index entry and cuts a torn or damaged
end off (a power cut in the middle of a write); a SIGKILL loses nothing that was written,
since the kernel's page cache outlives the process.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from projections.positions import Record
from services.log import frames
from services.log.frames import FRAME, MAX_PAYLOAD

log = logging.getLogger(__name__)
INDEX = struct.Struct(">QQ")  # offset, position of its frame in the segment file
INDEX_EVERY = 1024
_READ_CHUNK = 1 << 20


class SegmentError(RuntimeError):
    """A segment cannot be appended to or read as asked."""


class SegmentGap(SegmentError):
    """Records to append do not continue the segment: offsets `end` .. `first` - 1 are missing."""

    def __init__(self, topic: str, partition: int, end: int, first: int):
        super().__init__(f"{topic}[{partition}]: segment ends at {end}, next record is {first}")
        self.topic, self.partition, self.end, self.first = topic, partition, end, first


class Segment:
    """One partition's file: `end` is the next offset to append, `start` the first held."""

    def __init__(self, directory: Path, topic: str, partition: int, readonly: bool = False):
        """`readonly`: a reader beside the running writer (the audit CLI): it never cuts
        anything off, and sees what was whole when it looked (`refresh` to look again)."""
        self.topic, self.partition = topic, partition
        self.path = directory / f"{topic}.{partition}.seg"
        self._index_path = directory / f"{topic}.{partition}.idx"
        self._index: list[tuple[int, int]] = []  # (offset, position), ascending
        self.start = self.end = 0
        self._size = 0
        self._readonly = readonly
        self._fd = self._index_fd = -1
        self._recover()
        if not readonly:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
            self._fd = os.open(self.path, flags, 0o644)
            self._index_fd = os.open(self._index_path, flags, 0o644)

    def refresh(self) -> None:
        """A reader's second look: take in the whole frames appended since."""
        size = self.path.stat().st_size if self.path.exists() else 0
        for offset, position, frame_end in self._frames_from(self._size, size):
            if offset != self.end:
                break
            if offset % INDEX_EVERY == 0:
                self._index.append((offset, position))
            self._size, self.end = frame_end, offset + 1

    def _recover(self) -> None:
        size = self.path.stat().st_size if self.path.exists() else 0
        raw = self._index_path.read_bytes() if self._index_path.exists() else b""
        entries = [INDEX.unpack_from(raw, i) for i in range(0, len(raw) - len(raw) % 16, 16)]
        self._index = [(offset, position) for offset, position in entries if position < size]
        first = self._frames_from(0, size, limit=1)
        self.start = first[0][0] if first else 0
        position = self._index[-1][1] if self._index else 0
        expected = self._index[-1][0] if self._index else self.start
        good, end = position, expected
        for offset, _, frame_end in self._frames_from(position, size):
            if offset != end:
                break
            good, end = frame_end, offset + 1
        self.end = end
        self._size = good
        if self._readonly:
            return
        if good < size:
            log.warning("%s: cut a damaged end off at byte %d of %d", self.path, good, size)
            with open(self.path, "r+b") as f:
                f.truncate(good)
        if len(entries) != len(self._index) or len(raw) % 16:
            self._index_path.write_bytes(b"".join(INDEX.pack(*e) for e in self._index))

    def _frames_from(
        self, position: int, size: int, limit: int | None = None
    ) -> list[tuple[int, int, int]]:
        """(offset, position, end position) of each whole, intact frame from `position`."""
        found: list[tuple[int, int, int]] = []
        if not self.path.exists():
            return found
        with open(self.path, "rb") as f:
            f.seek(position)
            while position + FRAME.size <= size and (limit is None or len(found) < limit):
                header = f.read(FRAME.size)
                length, offset, crc = FRAME.unpack(header)
                if length > MAX_PAYLOAD or position + FRAME.size + length > size:
                    break
                if zlib.crc32(f.read(length)) != crc:
                    break
                found.append((offset, position, position + FRAME.size + length))
                position += FRAME.size + length
        return found

    def append(self, records: Iterable[Record]) -> None:
        """Append records whose offsets continue the segment exactly (the caller checks)."""
        data, index = bytearray(), bytearray()
        end = self.end
        for record in records:
            if record.offset != end:
                raise SegmentGap(self.topic, self.partition, end, record.offset)
            if end % INDEX_EVERY == 0:
                self._index.append((end, self._size + len(data)))
                index += INDEX.pack(end, self._size + len(data))
            data += frames.frame(record)
            end += 1
        if not data:
            return
        os.write(self._fd, data)
        if index:
            os.write(self._index_fd, index)
        self._size += len(data)
        self.end = end

    def locate(self, offset: int) -> int:
        """The file position of an indexed frame at or before `offset`: a read starts there."""
        at = bisect.bisect_right(self._index, (offset, 1 << 62)) - 1
        return self._index[at][1] if at >= 0 else 0

    @property
    def size(self) -> int:
        """Bytes of whole frames: what a reader may read."""
        return self._size

    def read(
        self, start: int, stop: int | None = None, max_records: int = 5000
    ) -> Iterator[list[Record]]:
        """Records from `start` up to `stop` (exclusive; default the end), in lists."""
        stop = self.end if stop is None else min(stop, self.end)
        if start < self.start and start < stop:
            raise SegmentError(f"{self.path} holds offsets from {self.start}, not {start}")
        if start >= stop:
            return
        position = self.locate(start)
        batch: list[Record] = []
        buffer, base = b"", position
        with open(self.path, "rb") as f:
            f.seek(position)
            while True:
                if len(buffer) - (position - base) < FRAME.size:
                    buffer, base = buffer[position - base :] + f.read(_READ_CHUNK), position
                length, offset, _ = FRAME.unpack_from(buffer, position - base)
                body = position - base + FRAME.size
                while len(buffer) < body + length:
                    more = f.read(max(_READ_CHUNK, length))
                    if not more:
                        raise SegmentError(f"{self.path}: ends inside the frame of {offset}")
                    buffer += more
                if offset >= start:
                    payload = buffer[body : body + length]
                    batch.append(frames.record(self.topic, self.partition, offset, payload))
                    if len(batch) >= max_records:
                        yield batch
                        batch = []
                position += FRAME.size + length
                if offset + 1 >= stop:
                    break
        if batch:
            yield batch

    def sync(self) -> None:
        if not self._readonly:
            os.fsync(self._fd)
            os.fsync(self._index_fd)

    def close(self) -> None:
        for fd in (self._fd, self._index_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)


class SegmentLog:
    """The segments of one data directory, opened as they are first used."""

    def __init__(self, directory: Path, readonly: bool = False):
        self.directory = directory
        self._readonly = readonly
        if not readonly:
            directory.mkdir(parents=True, exist_ok=True)
        self._segments: dict[tuple[str, int], Segment] = {}
        for path in sorted(directory.glob("*.seg")) if directory.is_dir() else []:
            topic, _, partition = path.stem.rpartition(".")
            if partition.isdigit():
                self.segment(topic, int(partition))

    def segment(self, topic: str, partition: int) -> Segment:
        key = (topic, partition)
        if key not in self._segments:
            self._segments[key] = Segment(self.directory, topic, partition, self._readonly)
        return self._segments[key]

    def ends(self) -> dict[tuple[str, int], int]:
        return {key: s.end for key, s in self._segments.items()}

    def end(self, topic: str, partition: int) -> int:
        s = self._segments.get((topic, partition))
        return s.end if s else 0

    def append(self, records: Iterable[Record]) -> int:
        """Append what continues each partition's segment; records below a segment's end are
        there already (a batch decided again after a crash) and are skipped. Raises SegmentGap
        where offsets would be missing (what continues the segment before it is appended)."""
        appended, gaps = self.append_continuing(records)
        if gaps:
            raise gaps[0]
        return sum(appended.values())

    def append_continuing(
        self, records: Iterable[Record]
    ) -> tuple[dict[tuple[str, int], int], list[SegmentGap]]:
        """Append, per partition, the run of records that continues its segment (records below
        its end are there already and skipped); return how many were appended per partition,
        and a gap for each partition whose records stop continuing it."""
        by_tp: dict[tuple[str, int], list[Record]] = {}
        for record in records:
            by_tp.setdefault((record.topic, record.partition), []).append(record)
        appended: dict[tuple[str, int], int] = {}
        gaps: list[SegmentGap] = []
        for (topic, partition), group in by_tp.items():
            segment = self.segment(topic, partition)
            group.sort(key=lambda r: r.offset)
            run: list[Record] = []
            for r in group:
                nxt = segment.end + len(run)
                if r.offset < nxt:
                    continue
                if r.offset > nxt:
                    gaps.append(SegmentGap(topic, partition, nxt, r.offset))
                    break
                run.append(r)
            segment.append(run)
            appended[(topic, partition)] = len(run)
        return appended, gaps

    def read(
        self,
        topic: str,
        partition: int,
        start: int,
        stop: int | None = None,
        max_records: int = 5000,
    ) -> Iterator[list[Record]]:
        return self.segment(topic, partition).read(start, stop, max_records)

    def record_at(self, topic: str, partition: int, offset: int) -> Record | None:
        segment = self._segments.get((topic, partition))
        if segment is None or not segment.start <= offset < segment.end:
            return None
        for batch in segment.read(offset, offset + 1):
            return batch[0]
        return None

    def sync(self) -> None:
        for segment in self._segments.values():
            segment.sync()
        with contextlib.suppress(OSError):
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def close(self) -> None:
        for segment in self._segments.values():
            segment.close()
        self._segments.clear()
