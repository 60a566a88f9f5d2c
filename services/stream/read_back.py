"""Reading the worker's own records back from the log only while that brings something new.

The command processor folds its events into the projection as soon as Kafka acknowledges them
(write-through, services/stream/processor.py). The projector's agent then reads the same events back
from the log and finds every one applied already: faust's per-message work for nothing, about
a fifth of a worker's CPU in an ingest (docs/benchmarks.md, "Figures behind the code"). So an events
partition whose reader delivers nothing but such copies is paused (in the aiokafka consumer
faust runs: services/kafka/faust_app.py PartitionReader says why there), and it reads again:

- at once, when write-through meets events of a paused partition that it cannot apply
  because they do not follow the stored position (something it did not write came first);
- every `DEVREG_READ_BACK_RECHECK_MS`, whatever happened: a safety net, so that a write
  nobody announced (a stale worker after a partition move) waits seconds, not until the
  next write of our own. Put off (at most MAX_PUT_OFF times running) while the processor
  has batches in flight: what the reader would bring then is mostly the worker's own
  records that write-through is about to fold, and folding them from the log instead costs
  several times as much and kept write-through from catching up (a burst of expiries:
  docs/benchmarks.md);
- after every rebalance: aiokafka's new partition states are not paused, and
  services/kafka/faust_app.py seeks every assigned partition to its store's position.

A resumed partition first seeks to the stored position, so the copies in between are skipped
without being read. Only `only_copies` pauses, and it records what it paused; only `_resume`
forgets a partition, and it resumes it. So no partition stays paused longer than the recheck
interval. With an interval of 0 nothing is ever paused (every event is read back, as before).

The same mechanism serves the commands topic: the worker hands its own commands to the
processor at Kafka's acknowledgement (services/stream/hand_off.py), so reading them back
brings only commands decided already; there the position is the processor's next offset, and
a gap is an own command that does not follow it (another producer's came first).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from services.metrics import Metrics

log = logging.getLogger(__name__)
# Rechecks put off in a row while batches are in flight, at most: a 100k expiry burst's folds
# take 5-6 s after it is sent, and with 3 (resumed after 6-8 s) one run in six had the readers
# take the rest over (docs/benchmarks.md, "Figures behind the code").
MAX_PUT_OFF = 5


class Reader(Protocol):
    """One topic's partitions in faust's consumer (services/kafka/faust_app.py
    PartitionReader)."""

    async def pause(self, partitions: set[int]) -> None: ...

    async def resume(self, positions: Mapping[int, int]) -> None:
        """Seek each partition to its position, then hand its records to the agent again."""


class ReadBack:
    def __init__(
        self,
        reader: Reader,
        next_offset: Callable[[int], int],
        metrics: Metrics,
        recheck_s: float,
        what: str = "events",
        in_flight: Callable[[], bool] = lambda: False,
    ):
        self._reader = reader
        self._next_offset = next_offset  # where to read from: the store's next offset
        self._metrics = metrics
        self._recheck_s = recheck_s
        self._paused: set[int] = set()
        self._what = what
        self._in_flight = in_flight  # the processor has batches sent and not folded yet
        metric_prefix = "devreg_read_back" if what == "events" else f"devreg_{what}_read_back"
        self._pauses = f"{metric_prefix}_pauses_total"
        self._resumes = f"{metric_prefix}_resumes_total"
        self._gauge = f"{metric_prefix}_paused_partitions"
        self._resumes_put_off = f"{metric_prefix}_rechecks_put_off_total"

    @property
    def paused(self) -> frozenset[int]:
        return frozenset(self._paused)

    async def only_copies(self, partitions: Iterable[int]) -> None:
        """The reader delivered, for these partitions, only events applied already."""
        if not self._recheck_s:
            return
        new = set(partitions) - self._paused
        if new:
            self._paused |= new  # recorded first: what is paused is always in the set
            self._metrics.inc(self._pauses, len(new))
            self._metrics.set(self._gauge, len(self._paused))
            await self._reader.pause(new)

    async def not_applied(self, partitions: Iterable[int]) -> None:
        """Write-through could not apply events of these partitions: read them from the log."""
        waiting = set(partitions) & self._paused
        if waiting:
            log.info("%s partitions %s read again: a gap", self._what, sorted(waiting))
            await self._resume(waiting, "gap")

    async def hold_off(self, partitions: Iterable[int]) -> None:
        """The processor is about to write a burst it folds itself (an expiry burst decided
        ahead: services/stream/commit_hold.py): these partitions stop being read now, not
        once the reader has brought a copy. Rechecks resume them as for any pause (put off
        while the processor's batches are in flight)."""
        await self.only_copies(partitions)

    def reassigned(self) -> None:
        """A rebalance gave the consumer new partition states, none of them paused."""
        self._paused.clear()
        self._metrics.set(self._gauge, 0)

    async def run(self) -> None:
        put_off = 0
        while self._recheck_s:
            await asyncio.sleep(self._recheck_s)
            if self._paused and self._in_flight() and put_off < MAX_PUT_OFF:
                put_off += 1
                self._metrics.inc(self._resumes_put_off)
            elif self._paused:
                put_off = 0
                await self._resume(set(self._paused), "recheck")

    async def _resume(self, partitions: set[int], reason: str) -> None:
        self._paused -= partitions
        self._metrics.set(self._gauge, len(self._paused))
        await self._reader.resume({p: self._next_offset(p) for p in sorted(partitions)})
        self._metrics.inc(self._resumes, len(partitions), reason=reason)
