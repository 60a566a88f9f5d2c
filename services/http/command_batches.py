"""HTTP's commands to Kafka as record batches: the commands of one turn of the event loop go
out together, one record batch per partition, at once.

One `send` per POST costs the producer's per-message work three times over (docs/design.md
§10: a record in a `send_batch` costs a third of a `send`), and its linger (1 ms) waits for
company even when there is none. Here the first command of a turn opens the batches and
schedules their sending for the end of the turn: every request read in the same turn joins
them, and a lone request goes out without waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer

from projections.positions import Record
from services.stream.record_batches import RecordBatch, RecordBatches, landed

Acks = dict[RecordBatch, Any]


class CommandBatches:
    def __init__(
        self, producer: AIOKafkaProducer, topic: str, partition_of: Callable[[bytes], int]
    ):
        self._producer = producer
        self._topic = topic
        self._partition_of = partition_of  # Kafka's default partitioner, for a record's key
        self._open: tuple[RecordBatches, asyncio.Future[Acks]] | None = None
        self._flushing: set[asyncio.Future[None]] = set()  # the loop keeps tasks weakly

    async def send(self, key: bytes, value: bytes) -> Record:
        """Returns the record the log holds once Kafka acknowledged it; raises KafkaError
        (or the producer's own error) when it did not."""
        batches, acks = self._open or self._begin()
        slot = await batches.add(self._topic, self._partition_of(key), key, value)
        # Shielded: a request that gives up must not cancel the others' acknowledgement.
        metas = await asyncio.shield(acks)
        return landed(self._topic, key, value, slot, metas)

    def _begin(self) -> tuple[RecordBatches, asyncio.Future[Acks]]:
        opened = (RecordBatches(self._producer), asyncio.get_running_loop().create_future())
        self._open = opened
        flushing = asyncio.ensure_future(self._flush(*opened))
        self._flushing.add(flushing)
        flushing.add_done_callback(self._flushing.discard)
        return opened

    async def _flush(self, batches: RecordBatches, acks: asyncio.Future[Acks]) -> None:
        self._open = None  # a request from now on opens the next batches
        try:
            await batches.flush()
            acks.set_result(await batches.acknowledged())
        except asyncio.CancelledError:
            acks.cancel()
            raise
        except Exception as exc:
            acks.set_exception(exc)
            acks.exception()  # retrieved: every request that waits on it gets it anyway
