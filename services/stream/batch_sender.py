"""Sending a decided batch to Kafka, and collecting what Kafka acknowledged.

The command processor (services/stream/processor.py) decides; this hands every event, outcome and
dead letter of a batch to the producer in order, then turns the acknowledgements into the
records the log now holds (for the projection's write-through) and each command's last event
position (for read-your-writes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer

from events import AnyCommand, AnyEvent, ChannelCreated, Outcome, encode
from events.identity import partition_key
from projections.positions import Record
from services.config import Settings
from services.metrics import Metrics
from services.stream.record_batches import RecordBatches, Slot, landed
from services.stream.visibility import Visibility

log = logging.getLogger(__name__)


class Emission(msgspec.Struct):
    """What one command produced: its outcome and events; or, for a command that came with a
    raw personal value, only its sealed copy (`resent`), to be decided in its place."""

    record: Record
    outcome: Outcome | None
    events: tuple[AnyEvent, ...] = ()
    resent: AnyCommand | None = None


class Dead(msgspec.Struct):
    record: Record
    reason: str


class Sent(msgspec.Struct):
    """A batch handed to the producer: per command, its events' (key, value, slot) in order;
    its record batches; the acks of its dead letters."""

    events: list[list[tuple[bytes, bytes, Slot]]]
    batches: RecordBatches
    dead: list[asyncio.Future[Any]]


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
        for em in emissions:
            p = em.record.partition
            if em.resent is not None:
                key = partition_key(em.resent.app_id, em.resent.device_id)
                await batches.add(s.commands_topic, p, key, encode(em.resent))
                events.append([])
                continue
            assert em.outcome is not None
            device_id = em.outcome.device_id
            # A command of many devices (ExpireRegistrations) has no device of its own: its
            # outcome goes under the command's own key, each event under its device's.
            key = partition_key(em.outcome.app_id, device_id) if device_id else em.record.key or b""
            sends = []
            for event in em.events:
                value = encode(event)
                k = key
                if not isinstance(event, ChannelCreated) and event.device_id != device_id:
                    k = partition_key(event.app_id, event.device_id)
                sends.append((k, value, await batches.add(s.events_topic, p, k, value)))
            events.append(sends)
            await batches.add(s.outcomes_topic, p, key, encode(em.outcome))
        for partition, token_key, token_value in tokens:
            await batches.add(s.tokens_topic, partition, token_key, token_value)
        await batches.flush()
        return Sent(events, batches, [await self._dead_letter(d) for d in dead])

    async def acknowledged(self, sent: Sent) -> tuple[list[tuple[int, int] | None], list[Record]]:
        """Await every acknowledgement; return each command's last event position, and every
        event as the record Kafka now holds."""
        metas = await sent.batches.acknowledged()
        await asyncio.gather(*sent.dead)
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
        return positions, acknowledged

    async def _dead_letter(self, d: Dead) -> asyncio.Future[object]:
        headers = [
            ("reason", d.reason.encode()),
            ("source", f"{d.record.topic}[{d.record.partition}]@{d.record.offset}".encode()),
        ]
        log.warning(
            "dead-lettered %s[%s]@%s: %s",
            d.record.topic,
            d.record.partition,
            d.record.offset,
            d.reason,
        )
        self._metrics.inc("devreg_commands_dead_lettered_total")
        sent: asyncio.Future[object] = await self._producer.send(
            self._settings.dlq_topic, d.record.value, key=d.record.key, headers=headers
        )
        return sent
