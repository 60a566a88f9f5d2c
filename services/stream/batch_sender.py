"""Sending a decided batch to Kafka, and collecting what Kafka acknowledged.

The command processor (services/stream/processor.py) decides; this hands every event, outcome,
dead letter, sealed copy and token claim of a batch to the producer in order, then turns the
acknowledgements into the records the log now holds (for the projection's write-through and
the embedded mode's kept log) and each command's last event position (for read-your-writes).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import msgspec
from aiokafka import AIOKafkaProducer

from events import AnyCommand, AnyEvent, ChannelCreated, Outcome, encode
from events.identity import partition_key
from projections.positions import Record
from services.config import Settings
from services.metrics import Metrics
from services.stream.record_batches import Headers, RecordBatches, Slot, landed
from services.stream.visibility import Visibility

log = logging.getLogger(__name__)


class Emission(msgspec.Struct):
    """What one command produced: its outcome and events; or, for a command that came with a
    raw personal value, only its sealed copy (`resent`), to be decided in its place."""

    record: Record
    outcome: Outcome | None
    events: tuple[AnyEvent, ...] = ()
    resent: AnyCommand | None = None
    # The events' (key, value) records, where made ahead (services/stream/prepared_expiries.py)
    encoded: tuple[tuple[bytes, bytes], ...] | None = None


class Dead(msgspec.Struct):
    record: Record
    reason: str


class Sent(msgspec.Struct):
    """A batch handed to the producer: per command, its events' (key, value, slot) in order;
    every other record (outcomes, dead letters, sealed copies of commands, token claims) with
    its slot; its record batches."""

    events: list[list[tuple[bytes, bytes, Slot]]]
    others: list[tuple[str, bytes | None, bytes | None, Headers, Slot]]
    batches: RecordBatches


class Acknowledged(msgspec.Struct):
    """What Kafka acknowledged of a batch: each command's last event position, every event
    as the record the log now holds, and every other record the batch wrote."""

    last_events: list[tuple[int, int] | None]
    events: list[Record]
    others: list[Record]


class BatchSender:
    def __init__(
        self,
        settings: Settings,
        producer: AIOKafkaProducer,
        visibility: Visibility,
        metrics: Metrics,
    ):
        self._settings = settings
        self._producer = producer
        self._visibility = visibility
        self._metrics = metrics

    async def send(
        self,
        emissions: list[Emission],
        dead: list[Dead],
        tokens: Sequence[tuple[int, bytes, bytes | None]] = (),
    ) -> Sent:
        """Hand every event, outcome and dead letter to the producer, in order per partition
        (aiokafka keeps one request in flight per broker); and the batch's records for the
        tokens topic (services/stream/token_claims.py)."""
        s = self._settings
        batches = RecordBatches(self._producer)
        events: list[list[tuple[bytes, bytes, Slot]]] = []
        others: list[tuple[str, bytes | None, bytes | None, Headers, Slot]] = []

        async def other(topic: str, p: int, key: bytes | None, value: bytes | None) -> None:
            others.append((topic, key, value, (), await batches.add(topic, p, key, value)))

        for em in emissions:
            p = em.record.partition
            if em.resent is not None:
                key = partition_key(em.resent.app_id, em.resent.device_id)
                await other(s.commands_topic, p, key, encode(em.resent))
                events.append([])
                continue
            assert em.outcome is not None
            device_id = em.outcome.device_id
            # A command of many devices (ExpireRegistrations) has no device of its own: its
            # outcome goes under the command's own key, each event under its device's.
            key = partition_key(em.outcome.app_id, device_id) if device_id else em.record.key or b""
            sends = []
            for k, value in em.encoded or self.records(em.events, key, device_id):
                sends.append((k, value, await batches.add(s.events_topic, p, k, value)))
            events.append(sends)
            await other(s.outcomes_topic, p, key, encode(em.outcome))
        for partition, token_key, token_value in tokens:
            await other(s.tokens_topic, partition, token_key, token_value)
        for d in dead:
            headers = self._dead_letter(d)
            slot = await batches.add(s.dlq_topic, 0, d.record.key, d.record.value, headers)
            others.append((s.dlq_topic, d.record.key, d.record.value, headers, slot))
        await batches.flush()
        return Sent(events, others, batches)

    @staticmethod
    def records(
        events: Sequence[AnyEvent], key: bytes, device_id: str
    ) -> list[tuple[bytes, bytes]]:
        """Each event's (key, value) on the events topic: under the command's key, or, for a
        command of many devices, under its device's."""
        out = []
        for event in events:
            k = key
            if not isinstance(event, ChannelCreated) and event.device_id != device_id:
                k = partition_key(event.app_id, event.device_id)
            out.append((k, encode(event)))
        return out

    async def acknowledged(self, sent: Sent) -> Acknowledged:
        """Await every acknowledgement; the records as Kafka now holds them."""
        metas = await sent.batches.acknowledged()
        positions: list[tuple[int, int] | None] = []
        acknowledged: list[Record] = []
        topic = self._settings.events_topic
        for sends in sent.events:
            for key, value, slot in sends:
                acknowledged.append(landed(topic, key, value, slot, metas))
            last = acknowledged[-1] if sends else None
            positions.append((last.partition, last.offset) if last else None)
            if last:
                self._visibility.emitted(last.partition, last.offset)
            self._metrics.inc("devreg_events_emitted_total", len(sends))
        others = [landed(t, k, v, slot, metas, h) for t, k, v, h, slot in sent.others]
        return Acknowledged(positions, acknowledged, others)

    def _dead_letter(self, d: Dead) -> Headers:
        headers: Headers = (
            ("reason", d.reason.encode()),
            ("source", f"{d.record.topic}[{d.record.partition}]@{d.record.offset}".encode()),
        )
        log.warning(
            "dead-lettered %s[%s]@%s: %s",
            d.record.topic,
            d.record.partition,
            d.record.offset,
            d.reason,
        )
        self._metrics.inc("devreg_commands_dead_lettered_total")
        return headers
