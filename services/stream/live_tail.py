"""A live tail of the events topic, for viewers of `/admin/{app}/live` (the console's Live view).

One plain consumer per worker (services/kafka/clients.py), shared by every viewer, and only
while someone watches. It reads the partitions this worker serves: a viewer connected to one
worker gets the others' partitions through them (services/http/live.py fans out).

Where it starts: the end offsets the embedded broker reports are only a lower bound
(docs/design.md §10), so a partition is read from the later of that bound and the projection's
applied position, both at or before the true end. Nothing produced after a viewer is told it is
`ready` can be missed; a few events from just before may be shown too.

Bounded per viewer: a queue of QUEUE_EVENTS lines. A viewer whose queue is full has fallen
behind (it reads more slowly than events arrive) and is cut off, not buffered without end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from services.kafka import clients
from services.kafka.clients import KafkaAccess
from services.metrics import Metrics

log = logging.getLogger(__name__)
QUEUE_EVENTS = 1000  # lines a viewer may have waiting before it is cut off
FETCH_WAIT_MS = 100  # the broker holds each fetch this long: a line's latency, at most
MAX_VIEWERS = 32  # live streams one worker serves at once
RETRY_S = 1.0


class TailFilter(msgspec.Struct, frozen=True):
    """Which events a viewer sees: always one app's; optionally one device's, one channel's."""

    app_id: str
    device_id: str | None = None
    channel: str | None = None

    def matches(self, event: Envelope) -> bool:
        if event.app_id != self.app_id:
            return False
        if self.device_id is not None and event.device_id != self.device_id:
            return False
        if self.channel is not None:
            return event.channel == self.channel or self.channel in event.channels
        return True


class Envelope(msgspec.Struct):
    """What filtering needs of any event, of a type this devreg knows or not."""

    app_id: str
    device_id: str | None = None
    channel: str | None = None
    channels: list[str] = []


class LiveLine(msgspec.Struct, frozen=True):
    partition: int
    offset: int
    timestamp: int
    event: msgspec.Raw  # the event's JSON as in the log


_envelope = msgspec.json.Decoder(Envelope)
_encoder = msgspec.json.Encoder()


class Viewer:
    def __init__(self, where: TailFilter):
        self.where = where
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_EVENTS)
        self.ready = asyncio.Event()  # set once the tail reads this viewer's partitions
        self.ended: str | None = None  # why the stream ends (cut off, worker stopping)

    def offer(self, line: bytes) -> bool:
        """Queue a line; True if this viewer was just cut off for falling behind."""
        if self.ended is not None:
            return False
        try:
            self.queue.put_nowait(line)
        except asyncio.QueueFull:
            self.end(f"this viewer fell behind: more than {QUEUE_EVENTS} events were waiting")
            return True
        return False

    def end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(b"")  # wakes a reader waiting on the queue


class TooManyViewers(RuntimeError):
    pass


class LiveTail:
    def __init__(
        self,
        kafka: KafkaAccess,
        topic: str,
        partitions: int,
        served: Callable[[], frozenset[int] | None],
        applied: Callable[[], Mapping[tuple[str, int], int]],
        metrics: Metrics,
    ):
        self._kafka, self._topic, self._partitions = kafka, topic, partitions
        self._served = served  # partitions this worker serves, None: all
        self._applied = applied  # the projection's next offsets
        self._metrics = metrics
        self._viewers: set[Viewer] = set()
        self._someone = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def watch(self, where: TailFilter) -> Viewer:
        """A new viewer, once the tail reads every partition it serves."""
        if self._closed:
            raise TooManyViewers("the worker is stopping")
        if len(self._viewers) >= MAX_VIEWERS:
            raise TooManyViewers(f"this worker already serves {MAX_VIEWERS} live streams")
        viewer = Viewer(where)
        self._viewers.add(viewer)
        self._metrics.set("devreg_live_viewers", len(self._viewers))
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
            self._task.add_done_callback(self._ended)
        self._someone.set()
        try:
            await viewer.ready.wait()
        except BaseException:
            self.leave(viewer)
            raise
        return viewer

    def leave(self, viewer: Viewer) -> None:
        self._viewers.discard(viewer)
        self._metrics.set("devreg_live_viewers", len(self._viewers))

    def end_all(self, reason: str) -> None:
        for viewer in list(self._viewers):
            viewer.end(reason)

    async def close(self) -> None:
        self._closed = True
        self.end_all("the worker is stopping")
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        consumer = clients.consumer(self._kafka, fetch_max_wait_ms=FETCH_WAIT_MS)
        try:
            await consumer.start()
            while True:
                try:
                    await self._serve(consumer)
                except (KafkaError, OSError) as exc:
                    # Kafka away, or the consumer in a state it refuses: the viewers are told
                    # (their streams end with the reason), the worker goes on, and the tail
                    # starts afresh for whoever watches next.
                    self._unreadable(exc)
                    consumer.assign([])
                    await asyncio.sleep(RETRY_S)  # not a hot loop while Kafka is away
        except (KafkaError, OSError) as exc:  # the consumer did not even start
            self._unreadable(exc)
        finally:
            self._task = None
            await clients.stop_consumer(consumer)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A tail that ended on an error no one expected is a bug: said loudly, and no viewer
        is left waiting on it (the next one starts a new tail)."""
        error = None if task.cancelled() else task.exception()
        if error is not None:
            log.error("live tail stopped: %r", error, exc_info=error)
            self._end_viewers()

    def _unreadable(self, exc: BaseException) -> None:
        log.warning("live tail: the events topic cannot be read: %r", exc, exc_info=exc)
        self._end_viewers()

    def _end_viewers(self) -> None:
        for viewer in list(self._viewers):
            viewer.end("the events topic cannot be read; try again shortly")
            viewer.ready.set()  # what waits for it learns why at once

    async def _serve(self, consumer: AIOKafkaConsumer) -> None:
        """Read while anyone watches; idle, with nothing assigned, while no one does."""
        assigned: frozenset[int] = frozenset()
        while True:
            if not self._viewers:
                consumer.assign([])
                assigned = frozenset()
                self._someone.clear()
                await self._someone.wait()
            wanted = self._served()
            wanted = frozenset(range(self._partitions)) if wanted is None else wanted
            if wanted != assigned:
                await self._assign(consumer, assigned, wanted)
                assigned = wanted
            for viewer in self._viewers:
                viewer.ready.set()
            batches = await consumer.getmany(timeout_ms=FETCH_WAIT_MS)
            for records in batches.values():
                for record in records:
                    self._offer(record.partition, record.offset, record.timestamp, record.value)

    async def _assign(
        self, consumer: AIOKafkaConsumer, had: frozenset[int], wanted: frozenset[int]
    ) -> None:
        """Partitions kept go on from where they are; new ones start at the later of the
        reported end (a lower bound) and the projection's applied position."""
        kept = {p: await consumer.position(self._tp(p)) for p in had & wanted}
        consumer.assign([self._tp(p) for p in sorted(wanted)])
        new = [self._tp(p) for p in sorted(wanted - had)]
        ends = await clients.end_offsets(consumer, new) if new else {}
        applied = self._applied()
        for tp in new:
            kept[tp.partition] = max(ends.get(tp, 0), applied.get((self._topic, tp.partition), 0))
        for partition, offset in kept.items():
            consumer.seek(self._tp(partition), offset)

    def _tp(self, partition: int) -> TopicPartition:
        return TopicPartition(self._topic, partition)

    def _offer(self, partition: int, offset: int, timestamp: int, value: bytes | None) -> None:
        try:
            event = _envelope.decode(value or b"")
        except msgspec.DecodeError:
            return  # not an event at all: nothing a viewer could be shown
        line: bytes | None = None
        for viewer in list(self._viewers):
            if viewer.where.matches(event):
                line = line or _encoder.encode(
                    LiveLine(partition, offset, timestamp, msgspec.Raw(value or b""))
                )
                if viewer.offer(line):
                    log.info("live viewer cut off: it fell behind")
                    self._metrics.inc("devreg_http_live_cut_total")
