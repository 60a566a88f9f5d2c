"""Folds the tokens topic into the token index, and tells a device it was superseded.

When a claim finds the token held by another device of the app (and the app keeps one device
per token), the older device's own single writer must record it: the relay sends that device
a SupersedeDevice command, keyed to its partition, with an id derived from both
registrations, so a relay that folds the same records again (after a crash, or a worker that
takes the partition over) sends the same command, which is decided once. In the embedded
mode the commands are kept (services/log/journal.py) before the index commits: the broker's
memory alone would lose them in a crash, and the folded records would not be folded again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaProducer

from events import SupersedeDevice, encode
from events.identity import partition_key
from projections.positions import Record
from services.log.journal import Keep
from services.metrics import Metrics
from services.stream.gate import Gate
from services.stream.read_back import ReadBack
from services.stream.record_batches import RecordBatches
from services.tokens.index_store import IndexStore, Superseded
from services.tokens.records import Claim, decode_value

log = logging.getLogger(__name__)


def _claims(record: Record) -> bool:
    return record.value is not None and isinstance(decode_value(record.value), Claim)


def supersede_command(item: Superseded) -> SupersedeDevice:
    return SupersedeDevice(
        command_id=f"supersede/{item.by_claim}/{item.device_id}",
        app_id=item.app_id,
        device_id=item.device_id,
        by_device_id=item.by_device_id,
        claim=item.claim,
    )


class TokenRelay:
    def __init__(
        self,
        store: IndexStore,
        producer: AIOKafkaProducer,
        commands_topic: str,
        partition_of: Callable[[str, str], int],
        superseding: frozenset[str],
        metrics: Metrics,
        keep: Keep | None = None,
        gate: Gate | None = None,
    ):
        self._keep = keep
        self._gate = gate or Gate()  # closed while the embedded broker is renewed
        self._store = store
        self._producer = producer
        self._topic = commands_topic
        self._partition_of = partition_of
        self._superseding = superseding
        self._metrics = metrics
        self._turn = asyncio.Lock()  # one fold at a time: the log's and the processor's
        # Pauses the tokens partitions whose reading brings only records folded at once
        # (services/stream/read_back.py); none where every record is read from the log.
        self.read_back: ReadBack | None = None

    async def handle(self, batch: Sequence[Record]) -> None:
        """Records read from the log. Fold, send the supersedes and wait for Kafka's
        acknowledgement, then commit the rows with the positions: a crash in between folds
        again and sends the same ids."""
        copies = {r.partition for r in batch} - {r.partition for r in self._store.fresh(batch)}
        async with self._turn:
            await self._fold(batch)
        if self.read_back is not None and copies:
            await self.read_back.only_copies(copies)

    async def handle_own(self, records: Sequence[Record]) -> None:
        """The processor's claims and releases as Kafka acknowledged them, folded at once
        (as the projection folds its events), so that the index holds a registration's claim
        by the time the registration is answered, without a second trip through the consumer.

        Only a partition's records that continue exactly from the index's position are
        folded here; the rest are read from the log (their partitions read again at once).
        So is everything while a fold of the log's is under way; a batch whose claims
        supersede a device (its command is sent through the writers' gate, which a renewal
        closes before it waits for the processor's batches, this one among them); and a batch
        with no claim at all (releases: an expiry burst's would stand in the processor's way,
        and no answer waits for them)."""
        if self.read_back is None:
            return
        run, gaps = self._continuing(records)
        if run and not any(_claims(r) for r in run):
            gaps |= {r.partition for r in run}
        elif run and not self._turn.locked():
            async with self._turn:
                superseded, positions = await self._store.fold(run, self._superseding)
                if superseded:
                    await self._store.rollback()
                    gaps |= {r.partition for r in run}
                else:
                    await self._store.commit(positions)
                    self._metrics.inc("devreg_token_records_folded_at_once_total", len(run))
        elif run:
            gaps |= {r.partition for r in run}
        if gaps:
            await self.read_back.not_applied(gaps)

    def _continuing(self, records: Sequence[Record]) -> tuple[list[Record], set[int]]:
        """Per partition, the records that continue exactly from the index's next offset;
        and the partitions where one did not."""
        nxt = dict(self._store.next_offsets)
        run: list[Record] = []
        gaps: set[int] = set()
        for r in sorted(records, key=lambda r: (r.partition, r.offset)):
            key = (r.topic, r.partition)
            if r.partition in gaps or r.offset < nxt.get(key, 0):
                continue
            if r.offset != nxt.get(key, 0):
                gaps.add(r.partition)
                continue
            run.append(r)
            nxt[key] = r.offset + 1
        return run, gaps

    async def _fold(self, batch: Sequence[Record]) -> None:
        superseded, positions = await self._store.fold(batch, self._superseding)
        if not positions:
            await self._store.rollback()
            return
        try:
            if superseded:
                await self._send([supersede_command(item) for item in superseded])
        except BaseException:
            await self._store.rollback()
            raise
        await self._store.commit(positions)

    async def _send(self, commands: list[SupersedeDevice]) -> None:
        async with self._gate.passage():
            batches = RecordBatches(self._producer, keep=self._keep is not None)
            for c in commands:
                key = partition_key(c.app_id, c.device_id)
                partition = self._partition_of(c.app_id, c.device_id)
                await batches.add(self._topic, partition, key, encode(c))
            await batches.flush()
            if self._keep is None:
                await batches.acknowledged()
            else:
                kept = await batches.acknowledged_records()
                await self._keep(kept, batches.sent_per_partition)
        self._metrics.inc("devreg_supersede_commands_total", len(commands))
        log.info("sent %d supersede commands", len(commands))
