"""Handing records to Kafka as record batches, one per (topic, partition), in order.

aiokafka's `send_batch` costs a third of a `send` per record (docs/design.md §10). A closed batch is
sent at once (it does not linger), and several batches queued for one partition keep their
order: aiokafka holds a second one until the first has gone out.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer


class RecordBatch:
    """One record batch for one (topic, partition): filled, then sent."""

    def __init__(self, builder: Any):
        self.builder = builder


# Where a record went: its batch, its offset within it, and its create time (ms).
Slot = tuple[RecordBatch, int, int]


class RecordBatches:
    """Records added in order; a (topic, partition)'s batch is sent when full, the rest at
    `flush`; `acknowledged` awaits Kafka's answer to each batch sent."""

    def __init__(self, producer: AIOKafkaProducer):
        self._producer = producer
        self._open: dict[tuple[str, int], RecordBatch] = {}
        self._sent: list[RecordBatch] = []
        self._acks: list[asyncio.Future[Any]] = []  # one per batch in `_sent`

    async def add(self, topic: str, partition: int, key: bytes, value: bytes | None) -> Slot:
        tp = (topic, partition)
        batch = self._open.get(tp) or self._start(tp)
        meta = batch.builder.append(key=key, value=value, timestamp=None)
        if meta is None:  # full: send it, start another
            await self._send(tp)
            batch = self._start(tp)
            meta = batch.builder.append(key=key, value=value, timestamp=None)
            if meta is None:
                raise ValueError(f"a record of {len(value or b'')} bytes exceeds the batch size")
        return (batch, meta.offset, meta.timestamp)

    async def flush(self) -> None:
        for tp in list(self._open):
            await self._send(tp)

    async def acknowledged(self) -> dict[RecordBatch, Any]:
        """Every batch sent, with Kafka's RecordMetadata for it (its base offset)."""
        return dict(zip(self._sent, await asyncio.gather(*self._acks), strict=True))

    def _start(self, tp: tuple[str, int]) -> RecordBatch:
        batch = self._open[tp] = RecordBatch(self._producer.create_batch())
        return batch

    async def _send(self, tp: tuple[str, int]) -> None:
        batch = self._open.pop(tp)
        batch.builder.close()
        self._acks.append(await self._producer.send_batch(batch.builder, tp[0], partition=tp[1]))
        self._sent.append(batch)
