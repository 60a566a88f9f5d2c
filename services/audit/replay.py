"""`devreg replay`: the events of the log as NDJSON, filtered.

Times are event times (`occurred_at`). `--since` starts each partition at the broker's answer
to offsets-for-times when that answer checks out against the records, else at the beginning
(services/log/reader.py); this relies on an event being recorded after it occurred. The end is
always read: a command may carry an older `issued_at` than its neighbours, so no offset bounds
`--until` safely.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import IO

import msgspec

from events import EVENT_TYPES, AnyEvent, ChannelCreated, decode_event
from events.user_tokens import redacted
from projections.positions import Record
from services.audit.timeline import replay_line
from services.clock import now_ms
from services.log.reader import LogReader
from services.progress import Progress

log = logging.getLogger(__name__)


class ReplayLine(msgspec.Struct, frozen=True):
    partition: int
    offset: int
    timestamp: int
    event: AnyEvent


class Filter(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str | None = None
    device_id: str | None = None
    channel: str | None = None
    types: frozenset[str] = frozenset()  # tags, e.g. device-registered/1
    since: int | None = None
    until: int | None = None

    def matches(self, event: AnyEvent) -> bool:
        if self.app_id is not None and event.app_id != self.app_id:
            return False
        if self.device_id is not None and getattr(event, "device_id", None) != self.device_id:
            return False
        if self.types and _tag(type(event)) not in self.types:
            return False
        if self.since is not None and event.occurred_at < self.since:
            return False
        if self.until is not None and event.occurred_at > self.until:
            return False
        if self.channel is not None:
            if isinstance(event, ChannelCreated):
                return event.channel == self.channel
            return self.channel in event.channels
        return True


def _tag(cls: type) -> str:
    return str(cls.__struct_config__.tag)  # type: ignore[attr-defined]


def event_type_tags(names: Iterable[str]) -> frozenset[str]:
    """Tags from tags or class names (`device-registered/1`, `DeviceRegistered`)."""
    known = {name: _tag(cls) for cls in EVENT_TYPES for name in (cls.__name__, _tag(cls))}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown event type {unknown[0]!r}; known: {', '.join(sorted(known))}")
    return frozenset(known[name] for name in names)


def parse_time(text: str) -> int:
    """ms since the epoch, from ISO-8601 (UTC unless it says otherwise), an integer of ms, or
    `now`."""
    text = text.strip()
    if text == "now":
        return now_ms()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither ISO-8601 nor ms since the epoch") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


class Replay:
    """Writes matching events of `topic` to `out`; counts what it wrote and what it could not
    decode (those are reported on stderr, never silently dropped)."""

    def __init__(
        self,
        reader: LogReader,
        topic: str,
        where: Filter,
        out: IO[bytes],
        human: bool = False,
        shown: Callable[[AnyEvent], AnyEvent] | None = None,
    ):
        self._reader, self._topic, self._where, self._out = reader, topic, where, out
        self._human = human  # a line of text per event (a terminal), else NDJSON
        self._shown = shown or (lambda event: event)  # sealed values opened, for the text
        self._encoder = msgspec.json.Encoder()
        self.written = self.undecodable = 0

    async def starts(self, from_offsets: dict[int | None, int], scan: bool) -> dict[int, int]:
        """Per partition: the --from-offset given (None: every partition), raised to where
        --since begins when the broker's time index can tell."""
        tps = await self._reader.partitions(self._topic)
        default = from_offsets.get(None, 0)
        starts = {tp.partition: from_offsets.get(tp.partition, default) for tp in tps}
        if self._where.since is not None and not scan:
            found, scanned = await self._reader.offsets_for_time(tps, self._where.since)
            for tp, offset in found.items():
                starts[tp.partition] = max(starts[tp.partition], offset)
            if scanned:
                log.info("time index not usable on %d partition(s): scanning them", len(scanned))
        return starts

    async def run(self, starts: dict[int, int], follow: bool, progress: Progress) -> None:
        tps = {tp.partition: tp for tp in await self._reader.partitions(self._topic)}
        if progress.total is None and not follow:
            ends = await self._reader.end_offsets(list(tps.values()))
            progress.total = sum(max(ends[tp] - starts[p], 0) for p, tp in tps.items())
        begin = {tps[p]: offset for p, offset in starts.items()}
        async for batch in self._reader.read(begin, follow=follow):
            self._write(batch)
            progress.advance(len(batch))

    def _write(self, batch: list[Record]) -> None:
        lines: list[ReplayLine] = []
        for record in batch:
            try:
                event = decode_event(record.value or b"")
            except msgspec.DecodeError as exc:
                self.undecodable += 1
                where = f"{record.topic}[{record.partition}]@{record.offset}"
                print(f"devreg replay: undecodable event at {where}: {exc}", file=sys.stderr)
                continue
            if self._where.matches(event):
                at = (record.partition, record.offset, record.timestamp)
                lines.append(ReplayLine(*at, redacted(event)))
        if lines and self._human:
            text = "".join(
                replay_line(x.partition, x.offset, self._shown(x.event)) + "\n" for x in lines
            )
            self._out.write(text.encode())
            self._out.flush()
            self.written += len(lines)
        elif lines:
            self._out.write(self._encoder.encode_lines(lines))
            self._out.flush()
            self.written += len(lines)
