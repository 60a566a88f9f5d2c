"""The tokens topic's records of batches sent while an expiry burst is held, sent after it.

An expired device releases its token's fingerprint: one record on the tokens topic per
device, as many as the burst's events. Sent beside the events, they double what the burst
hands the producer before its last event is in the log (docs/benchmarks.md). They are the
token index's bookkeeping, not the device's history, so while the burst's commits are held
(commit_hold.py) every batch's token records wait here, in batch order, and go out in one
go when the hold ends, before any later batch's. The tokens topic keeps the order the
processor decided in, and each batch still commits only once its token records are
acknowledged (a crash before that re-processes the commands: the same records again).
"""

from __future__ import annotations

import asyncio

import msgspec
from aiokafka import AIOKafkaProducer

from projections.positions import Record
from services.stream.record_batches import RecordBatches

TokenRecord = tuple[int, bytes, bytes | None]  # partition, key, value (None: a tombstone)
TP = tuple[str, int]


class Landed(msgspec.Struct):
    """A batch's token records as the log holds them, and the record batches they went out
    in per partition (the embedded mode's kept log counts them: services/log/journal.py)."""

    records: list[Record]
    batches: dict[TP, int]


class TokenLane:
    def __init__(self, producer: AIOKafkaProducer, topic: str):
        self._producer = producer
        self._topic = topic
        self._queued: list[tuple[list[TokenRecord], asyncio.Future[Landed]]] = []
        self._resolving: set[asyncio.Future[None]] = set()  # referenced until done

    @property
    def queued(self) -> bool:
        return bool(self._queued)

    def defer(self, records: list[TokenRecord]) -> asyncio.Future[Landed]:
        """Queue a batch's token records; the future resolves once Kafka acknowledged them."""
        landed: asyncio.Future[Landed] = asyncio.get_running_loop().create_future()
        self._queued.append((records, landed))
        return landed

    async def flush(self) -> None:
        """Hand every queued record to the producer, in order (the caller holds the
        processor's turn, so no later batch's token records go first)."""
        queued, self._queued = self._queued, []
        if not queued:
            return
        batches = RecordBatches(self._producer, keep=True)
        try:
            for records, _ in queued:
                for partition, key, value in records:
                    await batches.add(self._topic, partition, key, value)
            await batches.flush()
        except BaseException as exc:
            for _, landed in queued:
                landed.set_exception(exc)
            raise
        resolving = asyncio.ensure_future(self._resolve(batches, queued))
        self._resolving.add(resolving)
        resolving.add_done_callback(self._resolving.discard)

    @staticmethod
    async def _resolve(
        batches: RecordBatches, queued: list[tuple[list[TokenRecord], asyncio.Future[Landed]]]
    ) -> None:
        try:
            acknowledged = await batches.acknowledged_records()
        except asyncio.CancelledError:
            for _, landed in queued:
                landed.cancel()
            raise
        except Exception as exc:  # each batch waiting on it fails, and the worker stops
            for _, landed in queued:
                landed.set_exception(exc)
            return
        start = 0
        counted = dict(batches.sent_per_partition)
        for records, landed in queued:
            end = start + len(records)
            # The record batches are counted once, with the first batch's records.
            landed.set_result(Landed(acknowledged[start:end], counted))
            counted = {}
            start = end
