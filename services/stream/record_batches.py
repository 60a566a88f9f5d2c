"""Handing records to Kafka as record batches, one per (topic, partition), in order.

aiokafka's `send_batch` costs a third of a `send` per record (docs/design.md §10). A closed batch is
sent at once (it does not linger), and several batches queued for one partition keep their
order: aiokafka holds a second one until the first has gone out.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer

from projections.positions import Record


class RecordBatch:
    """One record batch for one (topic, partition): filled, then sent."""

    def __init__(self, builder: Any):
        self.builder = builder


Headers = tuple[tuple[str, bytes | None], ...]
# Where a record went: its batch, its offset within it, and its create time (ms).
Slot = tuple[RecordBatch, int, int]


def landed(
    topic: str,
    key: bytes | None,
    value: bytes | None,
    slot: Slot,
    metas: dict[RecordBatch, Any],
    headers: Headers = (),
) -> Record:
    """The record the log holds, once its batch was acknowledged (`metas`)."""
    batch, offset, created = slot
    meta = metas[batch]
    # -1: the topic keeps create times, the record's own (as `send` reports it)
    stamp = created if meta.timestamp == -1 else meta.timestamp
    return Record(topic, meta.partition, meta.offset + offset, stamp, key, value, headers)


class RecordBatches:
    """Records added in order; a (topic, partition)'s batch is sent when full, the rest at
    `flush`; `acknowledged` awaits Kafka's answer to each batch sent."""

    def __init__(self, producer: AIOKafkaProducer, keep: bool = False):
        self._producer = producer
        self._open: dict[tuple[str, int], RecordBatch] = {}
        self._sent: list[RecordBatch] = []
        self.sent_per_partition: dict[tuple[str, int], int] = {}
        self._acks: list[asyncio.Future[Any]] = []  # one per batch in `_sent`
        # With `keep`, every record added, for `acknowledged_records`.
        self._kept: list[tuple[str, bytes | None, bytes | None, Headers, Slot]] | None = (
            [] if keep else None
        )

    async def add(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        headers: Headers = (),
    ) -> Slot:
        tp = (topic, partition)
        batch = self._open.get(tp) or self._start(tp)
        meta = batch.builder.append(key=key, value=value, timestamp=None, headers=list(headers))
        if meta is None:  # full: send it, start another
            await self._send(tp)
            batch = self._start(tp)
            meta = batch.builder.append(key=key, value=value, timestamp=None, headers=list(headers))
            if meta is None:
                raise ValueError(f"a record of {len(value or b'')} bytes exceeds the batch size")
        slot = (batch, meta.offset, meta.timestamp)
        if self._kept is not None:
            self._kept.append((topic, key, value, headers, slot))
        return slot

    async def flush(self) -> None:
        for tp in list(self._open):
            await self._send(tp)

    async def acknowledged(self) -> dict[RecordBatch, Any]:
        """Every batch sent, with Kafka's RecordMetadata for it (its base offset)."""
        return dict(zip(self._sent, await asyncio.gather(*self._acks), strict=True))

    async def acknowledged_records(self) -> list[Record]:
        """Every record added (made with `keep`), as the log holds it, in the order added."""
        assert self._kept is not None, "RecordBatches(keep=True) keeps the records"
        metas = await self.acknowledged()
        return [landed(t, k, v, slot, metas, h) for t, k, v, h, slot in self._kept]

    def _start(self, tp: tuple[str, int]) -> RecordBatch:
        batch = self._open[tp] = RecordBatch(self._producer.create_batch())
        return batch

    async def _send(self, tp: tuple[str, int]) -> None:
        batch = self._open.pop(tp)
        batch.builder.close()
        self._acks.append(await self._producer.send_batch(batch.builder, tp[0], partition=tp[1]))
        self._sent.append(batch)
        self.sent_per_partition[tp] = self.sent_per_partition.get(tp, 0) + 1
