"""The worker's own commands, handed to the command processor as soon as Kafka acknowledges
them, instead of after a trip back through the broker and faust's consumer.

A POST's command would otherwise wait for the consumer's next fetch (the embedded broker holds
each for its whole max-wait, docs/design.md §10), faust's batch window, and the per-message
work of both, before it is decided; at load that round trip is a third of a POST's CPU
(docs/benchmarks.md). What Kafka acknowledged is the very record the log holds: its topic,
partition and offset from the acknowledgement, its key and value as sent, its create time as
stamped. So deciding it from here decides the log's record, in the log's order, provided:

- **Log order.** A partition's records are decided only as a run that continues exactly from
  the processor's next offset, checked while it is this caller's turn. An offer that does
  not follow (a command of another producer came in between, or an own one not offered yet)
  is left to the log: its partition's reader is resumed from the next offset at once, and
  the consumer decides it and everything after it in order.
- **Ownership.** Only partitions this worker's consumer holds are decided here. A rebalance
  fences the hand-off: when partitions are revoked (before the consumer rejoins the group)
  and when new ones are assigned, the queue is dropped and a new generation begins; an offer
  of an older generation is never decided here. What is dropped is read from the log by
  whichever worker owns the partition then.

The consumer still reads the commands partitions, and the agent's batches go through `from_log`:
a partition whose batch held nothing but commands decided already is paused in the consumer
(services/stream/read_back.py), and read again on a gap, every `DEVREG_COMMANDS_RECHECK_MS`,
and after every rebalance. So a command of another producer on a paused partition is decided
within the recheck interval, or as soon as the worker's next own command there meets it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable, Sequence
from typing import Protocol

from projections.positions import Record
from services.config import Settings
from services.metrics import Metrics
from services.stream.processor import Pick
from services.stream.read_back import ReadBack, Reader

log = logging.getLogger(__name__)


class Processor(Protocol):
    """What the hand-off needs of services/stream/processor.py CommandProcessor."""

    def next_offset(self, partition: int) -> int: ...

    async def handle(self, records: Sequence[Record]) -> None: ...

    async def handle_picked(self, pick: Pick) -> None: ...

    async def turn_over(self) -> None: ...

    def forget_prepared(self) -> None: ...

    @property
    def holding(self) -> bool: ...


class HandOff:
    def __init__(
        self,
        processor: Processor,
        read_back: ReadBack,
        metrics: Metrics,
        batch_size: int,
        enabled: bool = True,
    ):
        self._processor = processor
        self._read_back = read_back  # of the commands partitions
        self._metrics = metrics
        self._batch_size = batch_size
        self._enabled = enabled
        self._generation = 0
        self._owned: frozenset[int] = frozenset()  # commands partitions, this generation
        # (generation, record, weight: its devices), in offer order
        self._queue: list[tuple[int, Record, int]] = []
        self._wake = asyncio.Event()

    @classmethod
    def of(
        cls, processor: Processor, reader: Reader, metrics: Metrics, settings: Settings
    ) -> HandOff:
        """The worker's: the commands partitions of faust's consumer paused and resumed by
        a read-back of their own (none when the hand-off is off: every command is read)."""
        recheck_s = settings.commands_recheck_ms / 1000 if settings.hand_off else 0
        back = ReadBack(
            reader,
            processor.next_offset,
            metrics,
            recheck_s,
            what="commands",
            in_flight=lambda: processor.holding,
        )
        return cls(processor, back, metrics, settings.batch_size, enabled=settings.hand_off)

    @property
    def read_back(self) -> ReadBack:
        return self._read_back

    def offer(self, record: Record, weight: int = 1) -> None:
        """Kafka acknowledged this own command: the record the log holds. `weight`: the
        devices it names (an expiry command may name many), so a batch handed to the processor
        is bounded by devices, not commands, and batches keep overlapping during a burst."""
        if not self._enabled:
            return
        if record.partition not in self._owned:
            self._metrics.inc("devreg_commands_left_to_log_total", reason="fenced")
            return
        self._queue.append((self._generation, record, weight))
        self._wake.set()

    def offer_all(self, records: Iterable[Record]) -> None:
        for record in records:
            self.offer(record)

    def offer_weighed(self, weighed: Iterable[tuple[Record, int]]) -> None:
        for record, weight in weighed:
            self.offer(record, weight)

    def assigned(self, partitions: Iterable[int]) -> None:
        """A rebalance assigned these commands partitions (the consumer has new partition
        states, none paused, and reads each from its store's position)."""
        self._fence()
        self._owned = frozenset(partitions)
        self._read_back.reassigned()

    async def revoked(self) -> None:
        """A rebalance takes the partitions away: nothing more is decided here until the
        next assignment, and a batch being decided has gone out before this returns."""
        self._fence()
        await self._processor.turn_over()
        self._processor.forget_prepared()

    def _fence(self) -> None:
        self._generation += 1
        self._owned = frozenset()
        dropped = len(self._queue)
        self._queue.clear()
        if dropped:
            self._metrics.inc("devreg_commands_left_to_log_total", dropped, reason="fenced")

    async def from_log(self, records: Sequence[Record]) -> None:
        """The agent's batch, read from the log: decided as ever; a partition that brought
        only commands decided already (the hand-off's) stops being read."""
        before: dict[int, int] = {}
        for r in records:
            if r.partition not in before:
                before[r.partition] = self._processor.next_offset(r.partition)
        copies = set(before)
        for r in records:
            if r.offset >= before[r.partition]:
                copies.discard(r.partition)
        await self._processor.handle(records)
        if self._enabled and copies:
            await self._read_back.only_copies(copies)

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                n = self._take()
                taken = self._queue[:n]
                del self._queue[:n]
                gaps: set[int] = set()
                await self._processor.handle_picked(functools.partial(self._pick, taken, gaps))
                if gaps:
                    await self._read_back.not_applied(gaps)

    def _take(self) -> int:
        """How many queued offers the next batch takes: up to `batch_size` devices, one at
        least."""
        weight = 0
        for n, (_, _, w) in enumerate(self._queue):
            weight += w
            if weight > self._batch_size:
                return max(n, 1)
        return len(self._queue)

    def _pick(self, taken: list[tuple[int, Record, int]], gaps: set[int]) -> list[Record]:
        """Run while it is the hand-off's turn: per partition, the offers that continue
        exactly from the processor's next offset; `gaps` gets the partitions where an offer
        did not (the log decides the rest there)."""
        by_partition: dict[int, list[Record]] = {}
        fenced = 0
        for generation, record, _ in taken:
            if generation != self._generation or record.partition not in self._owned:
                fenced += 1
                continue
            by_partition.setdefault(record.partition, []).append(record)
        run: list[Record] = []
        left = 0
        for partition, records in by_partition.items():
            records.sort(key=lambda r: r.offset)
            nxt = self._processor.next_offset(partition)
            for n, record in enumerate(records):
                if record.offset < nxt:
                    continue  # the consumer read it and decided it first
                if record.offset != nxt:
                    gaps.add(partition)
                    left += len(records) - n
                    break
                run.append(record)
                nxt += 1
        if fenced:
            self._metrics.inc("devreg_commands_left_to_log_total", fenced, reason="fenced")
        if left:
            self._metrics.inc("devreg_commands_left_to_log_total", left, reason="gap")
        if run:
            self._metrics.inc("devreg_commands_handed_off_total", len(run))
        return run
