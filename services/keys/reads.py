"""Reading the keys of a worker's partitions from the keys topic into its key store.

On Apache Kafka a worker handed partitions drops what its key store held of them (another
worker may have erased keys meanwhile, and a compacted topic drops tombstones after
delete.retention.ms) and reads them again from offset 0. In the embedded mode (`applied`
given) it reads on from the store's positions: only this worker writes the keys topic and the
kept log keeps every tombstone; a position past the kept log's end (a power cut tore it) is
read from 0 instead. Either way all of them in one read, at once: left to the first need,
each partition's first request waited for a reader of its own (~0.2 s here, over a second
under load: docs/benchmarks.md). A request that needs a partition not read yet waits for
its read, and readiness waits for all of them (services/stream/catch_up.py); each read
says at INFO how many records it read and how long it took. A read that fails is logged and
made again at the next need.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from aiokafka import TopicPartition

from projections.positions import Position, last_positions
from services.kafka.clients import KafkaAccess
from services.keys import records
from services.keys.applied import AppliedOffsets
from services.keys.store import KeyStore, Slot
from services.log.reader import LogReader
from services.log.segments import Segment

log = logging.getLogger(__name__)


class PartitionReads:
    def __init__(
        self,
        store: KeyStore,
        kafka: KafkaAccess,
        topic: str,
        let_go: Callable[[Iterable[Slot]], None],
        applied: AppliedOffsets | None = None,
    ):
        """`applied`: the embedded mode's (services/keys/applied.py): handed partitions are
        read on from the store's positions, and where the reads reached is told to it."""
        self._store = store
        self._applied = applied
        # Partitions whose stored positions were checked against the kept log: at their first
        # read, before anything here writes their keys. Later a read may pass the kept log's
        # end (records acknowledged, being kept): that is no tear.
        self._checked: set[int] = set()
        self._kafka = kafka
        self._topic = topic
        self._let_go = let_go  # told the keys a read found erased
        self._caught_up: set[int] = set()
        self._epoch = 0  # bumped when partitions are handed over: a read begun before stops
        self._reading: dict[int, asyncio.Future[None]] = {}

    async def handed(self, partitions: set[int]) -> None:
        """Read `partitions` now, with any read a handover abandoned, in one reader: again
        from 0, dropping what the store held of them, unless in the embedded mode."""
        self._epoch += 1
        self._caught_up -= partitions
        if self._applied is None:
            await self._store.forget_partitions(self._topic, partitions)
        abandoned = {p for p, reading in self._reading.items() if not reading.done()}
        self._start(partitions | abandoned)

    def caught_up(self, partition: int) -> bool:
        return partition in self._caught_up

    def read(self, partition: int) -> bool:
        """True once the partition's keys were read; else False, and a read is started if
        none is under way (one that failed is made again: readiness asks this)."""
        if partition in self._caught_up:
            return True
        reading = self._reading.get(partition)
        if reading is None or reading.done():
            self._start({partition})
        return False

    async def catch_up(self, partition: int) -> None:
        """Return once the partition's keys are read (raises what a failed read raised)."""
        while partition not in self._caught_up:
            reading = self._reading.get(partition)
            if reading is None or reading.done():
                reading = self._start({partition})
            # A read abandoned by a handover ends without catching up: the loop reads again.
            await asyncio.shield(reading)

    def _start(self, partitions: set[int]) -> asyncio.Future[None]:
        reading = asyncio.ensure_future(self._read(partitions))
        reading.add_done_callback(functools.partial(self._done, sorted(partitions)))
        for partition in partitions:
            self._reading[partition] = reading
        return reading

    def _done(self, partitions: list[int], reading: asyncio.Future[None]) -> None:
        for partition in partitions:
            if self._reading.get(partition) is reading:
                del self._reading[partition]
        if not reading.cancelled() and reading.exception() is not None:
            log.warning(
                "keys of partitions %s not read from %s: %r; read again at the next need",
                partitions,
                self._topic,
                reading.exception(),
            )

    async def _read(self, partitions: set[int]) -> None:
        """Fold the partitions' keys from the stored positions to the end of the topic."""
        began = time.monotonic()
        epoch = self._epoch
        stored = {p.partition: p for p in await self._store.positions() if p.topic == self._topic}
        if self._applied is not None:
            torn = self._past_kept_end(stored, partitions - self._checked)
            self._checked |= partitions
            if torn:
                await self._store.forget_partitions(self._topic, torn)
                for partition in torn:
                    del stored[partition]
        reached = {p: stored.get(p, Position(self._topic, p, 0, "")) for p in partitions}
        starts = {
            TopicPartition(self._topic, p): reached[p].next_offset for p in sorted(partitions)
        }
        count = 0
        async with LogReader(self._kafka) as reader:
            async for batch in reader.read(starts):
                if epoch != self._epoch:
                    return  # handed over meanwhile: what it held is gone, read again from 0
                live, erased = records.fold(batch)
                last = last_positions(batch)
                await self._store.write(live.values(), erased, last)
                self._let_go(erased)
                reached.update((p.partition, p) for p in last)
                count += len(batch)
        if epoch == self._epoch:
            self._caught_up |= partitions
            if self._applied is not None:
                for position in reached.values():
                    self._applied.read_to(position)
        from_zero = sorted(tp.partition for tp, start in starts.items() if start == 0)
        log.info(
            "read %d records of %s, partitions %s, in %.2fs (%s)",
            count,
            self._topic,
            sorted(partitions),
            time.monotonic() - began,
            "all from offset 0"
            if len(from_zero) == len(starts)
            else f"from the key store's positions; from 0: {from_zero or 'none'}",
        )

    def _past_kept_end(self, stored: dict[int, Position], partitions: set[int]) -> set[int]:
        """Partitions whose stored position is past the kept log's end (a power cut tore
        the kept log's end, or lost it): read from 0, as nothing says what the store holds."""
        kept = self._kafka.kept_log
        torn = set()
        for partition in sorted(partitions & set(stored)):
            end = 0
            if kept is not None:
                segment = Segment(Path(kept), self._topic, partition, readonly=True)
                end = segment.end
                segment.close()
            if stored[partition].next_offset > end:
                log.warning(
                    "%s[%d]: the key store's position %d is past the kept log's end %d:"
                    " its keys are read again from 0",
                    self._topic,
                    partition,
                    stored[partition].next_offset,
                    end,
                )
                torn.add(partition)
        return torn
