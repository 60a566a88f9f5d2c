"""Record batches whose offsets devreg chooses, written to the embedded broker.

aiokafka's producer numbers the records of a batch 0, 1, 2, ... itself; restoring a log tail
into a fresh embedded broker needs a batch whose only record sits at offset delta T - 1 (the
filler: the broker's high-water mark moves by T, docs/design.md §10) and batches that must
land at known offsets. So this adapter builds the batches with aiokafka's record builder and
sends them in plain Produce requests, and checks where each one landed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaClient
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from projections.positions import Record
from services.kafka import clients
from services.kafka.clients import KafkaAccess

MAX_BATCH_BYTES = 512 * 1024  # below the broker's 1 MiB message limit, with room to spare
_TIMEOUT_MS = 30_000


class ProduceError(RuntimeError):
    """The broker refused a batch, or put it at another offset than devreg chose."""


def build_batch(records: Sequence[Record], base: int) -> bytes:
    """One record batch; each record at offset delta `record.offset - base`."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 30,
    )
    for r in records:
        headers = [(name, value) for name, value in r.headers]
        if builder.append(r.offset - base, r.timestamp, r.key, r.value, headers) is None:
            raise ProduceError(f"record {r.offset} does not fit a batch")
    return bytes(builder.build())


def chunks(records: Sequence[Record], limit: int = MAX_BATCH_BYTES) -> list[Sequence[Record]]:
    """Consecutive runs of records whose batches stay under `limit` bytes (roughly)."""
    runs: list[Sequence[Record]] = []
    start, size = 0, 0
    for index, r in enumerate(records):
        bytes_ = 64 + len(r.key or b"") + len(r.value or b"")
        bytes_ += sum(len(n) + len(v or b"") + 8 for n, v in r.headers)
        if size + bytes_ > limit and index > start:
            runs.append(records[start:index])
            start, size = index, 0
        size += bytes_
    if start < len(records):
        runs.append(records[start:])
    return runs


class RawProducer:
    """`async with RawProducer(kafka) as raw: await raw.produce(topic, p, batch)`."""

    def __init__(self, kafka: KafkaAccess):
        self._client: AIOKafkaClient = clients.client(kafka, request_timeout_ms=_TIMEOUT_MS)
        self._node: Any = None

    async def __aenter__(self) -> RawProducer:
        await self._client.bootstrap()
        self._node = next(iter(self._client.cluster.brokers())).nodeId
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.close()

    async def produce(self, topic: str, partition: int, batch: bytes) -> int:
        """Send one record batch; return the base offset the broker gave it."""
        request = ProduceRequest(None, -1, _TIMEOUT_MS, [(topic, [(partition, batch)])])
        response: Any = await self._client.send(self._node, request)
        answer = response.topics[0][1][0]  # (partition, error code, base offset, ...)
        if answer[1] != 0:
            raise ProduceError(f"{topic}[{partition}]: the broker refused a batch: {answer}")
        base: int = answer[2]
        return base
