"""Renewing the embedded broker's partitions while devreg runs.

The embedded broker lists every batch object of a partition on each fetch below its
high-water mark, and never drops one (docs/design.md §10): a partition's fetches grow slower
with every batch written, until a fetch with devreg's short wait returns nothing at all
(docs/benchmarks.md, "Figures behind the code"). So once devreg has kept
`DEVREG_EMBEDDED_ROLLOVER` records in any partition since the broker was last given its
partitions (an upper bound on the objects it holds there), the worker is held still for a
moment and the broker's topics are made again:

1. other clients' requests stop at the broker's public port (their produces sent are
   answered first), the worker's writers stop at their gate (HTTP commands, expiry and
   retention commands, the token relay's supersedes, the processor), the batches in flight
   are acknowledged, kept and committed, then the keyring's writes stop at theirs (a batch
   in flight may still create or erase keys), and the worker's consumer stops fetching
   devreg's partitions;
2. what the broker holds past the kept log's end is read (commands sent but not decided
   yet, records someone else wrote), to be written back at the same offsets;
3. devreg's six topics are deleted and created (a metadata request that allows creating
   topics, sent in between, makes the broker create one with its defaults: then it is
   deleted and created again);
4. each partition is given its tail from the kept log and what step 2 read
   (services/log/restore.py), never starting above where a store resumes, the keys and
   tokens topics compacted;
5. the consumer fetches again, from where it was, and the gates and the port open.

A renewal gives the broker every record a store of the worker still has to read (step 4).
After a backlog published in bulk (a million raw commands, say) that is most of the backlog,
and every renewal would copy it again, seconds each, every few thousand records decided. So
while more than `DEVREG_EMBEDDED_BACKLOG` records would be copied for the stores to read (or
are past the kept log, step 2), a due renewal waits for the worker to catch up: the backlog
sits in the broker in the publisher's large batches, few objects. It waits no longer than
until devreg itself wrote FORCED_AFTER times `DEVREG_EMBEDDED_ROLLOVER` batch objects in one
partition (Journal.objects_since_restore), which keeps the broker's fetches working.

The same loop compacts the kept log's keys and tokens topics in place once the journal has
kept a tombstone there (services/log/kept_compaction.py), in a thread, outside the pause.

Kafka clients of others lose their consumer groups' committed offsets for devreg's topics
(the broker drops them with the topic). Their requests wait at the broker's public port while
the worker holds still (services/log/public_port.py), from step 1 to step 5: a
record they produce is either past the kept log in the old partitions (step 2 reads it) or
goes to the fresh ones after the tail. Should a record of someone else's still land in a
fresh partition before the tail (a client that found the broker's own port), step 4 finds it
there, and the topics are made again with it given back after the tail
(services/log/foreign.py), up to remake.TRIES times; then the worker stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Protocol

import faust

from services.config import Settings
from services.kafka.clients import KafkaAccess
from services.kafka.faust_app import hold_fetching, resume_fetching
from services.log import kept_compaction, remake
from services.log.journal import Journal
from services.log.restore import Restored, tail_start
from services.log.topics import topic_names
from services.metrics import Metrics
from services.stream.gate import Gate

log = logging.getLogger(__name__)
TP = tuple[str, int]
_BACKLOG_WAIT_S = 5.0
_BACKLOG_LOG_EVERY_S = 30.0
# A renewal put off by a backlog waits at most until devreg wrote this many times
# DEVREG_EMBEDDED_ROLLOVER batch objects in one partition itself: 10,000 at the default, half
# the ~20-25k objects past which the broker's fetches answer nothing (docs/benchmarks.md,
# "Figures behind the code").
FORCED_AFTER = 5


class Quiesce(Protocol):
    def __call__(self) -> contextlib.AbstractAsyncContextManager[None]: ...


@contextlib.asynccontextmanager
async def held_still(
    gate: Gate,
    drain: Callable[[], Awaitable[None]],
    keys: Gate,
    app: faust.App,
    others: Quiesce,
) -> AsyncIterator[None]:
    """A worker holding still: no request of another client reaches the broker (`others`,
    the public port's hold), nothing written (its writers wait at `gate`), every decided
    batch kept and committed (`drain`), then no key written (the keyring waits at `keys`:
    a batch being drained may create or erase keys), nothing fetched by its consumer
    (faust's `app`)."""
    async with others():
        await gate.close()
        try:
            await drain()
            await keys.close()
            try:
                held = await hold_fetching(app)
                try:
                    yield
                finally:
                    await resume_fetching(app, held)
            finally:
                keys.open()
        finally:
            gate.open()


class Rollover:
    def __init__(
        self,
        settings: Settings,
        kafka: KafkaAccess,
        journal: Journal,
        quiesce: Quiesce,
        positions: Callable[[], Mapping[TP, int]],
        metrics: Metrics,
        check_every_s: float = 0.2,
    ):
        self._settings = settings
        self._kafka = kafka
        self._journal = journal
        self._quiesce = quiesce
        self._positions = positions  # where the worker's stores resume, per partition
        self._metrics = metrics
        self._check_every_s = check_every_s
        self._put_off_logged = -_BACKLOG_LOG_EVERY_S

    def due(self) -> bool:
        rollover = self._settings.embedded_rollover
        if max(self._journal.since_restore.values(), default=0) < rollover:
            return False
        objects = max(self._journal.objects_since_restore.values(), default=0)
        if objects >= FORCED_AFTER * rollover:
            return True
        lag = self._lag(self._floors())
        if lag <= self._settings.embedded_backlog:
            return True
        self._put_off(lag)
        return False

    def _floors(self) -> dict[TP, int]:
        """Where the worker's stores resume, for the topics they read."""
        s, positions = self._settings, self._positions()
        read = (s.commands_topic, s.events_topic, s.tokens_topic)
        return {tp: positions.get(tp, 0) for tp in self._journal.segments.ends() if tp[0] in read}

    def _lag(self, floors: Mapping[TP, int]) -> int:
        """Records a renewal would copy below the plain tails, for the stores to read still."""
        tail = self._settings.embedded_tail
        ends = self._journal.segments.ends()
        return sum(
            tail_start(end, tail, None) - tail_start(end, tail, floors.get(tp))
            for tp, end in ends.items()
        )

    def _put_off(self, lag: int) -> None:
        now = time.monotonic()
        if now - self._put_off_logged >= _BACKLOG_LOG_EVERY_S:
            self._put_off_logged = now
            log.info(
                "broker renewal put off while the worker catches up: %s records wait to be"
                " read (DEVREG_EMBEDDED_BACKLOG %s)",
                f"{lag:,}",
                f"{self._settings.embedded_backlog:,}",
            )

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._check_every_s)
            if self.due() and await self.roll() is None:
                await asyncio.sleep(_BACKLOG_WAIT_S)
            if self._journal.erasing:
                await self.compact()

    async def compact(self) -> int:
        """Compact the kept log's partitions where tombstones were kept, in a thread (the
        journal appends on meanwhile, past what the run looks at)."""
        erasing, self._journal.erasing = self._journal.erasing, set()
        parts = kept_compaction.snapshot(self._journal.segments, {t for t, _ in erasing})
        parts = [p for p in parts if (p[0].topic, p[0].partition) in erasing]
        floors = self._positions()
        return await asyncio.to_thread(kept_compaction.compact_all, parts, floors)

    async def roll(self) -> Restored | None:
        """Renew the broker's topics; None when a backlog put it off (nothing changed)."""
        began = time.monotonic()
        topics = topic_names(self._settings)
        async with self._quiesce():
            segments = self._journal.segments
            s = self._settings
            try:
                beyond = await remake.read_beyond(
                    self._kafka, topics, segments.ends(), s.embedded_backlog
                )
            except remake.Backlog:
                log.info(
                    "broker renewal put off: over %d records wait to be decided",
                    s.embedded_backlog,
                )
                return None
            floors = self._floors()
            backlog = self._lag(floors)
            restored = await remake.made_again(
                s, self._kafka, segments, topics, floors, beyond, self._metrics
            )
            self._journal.restored()
        held = time.monotonic() - began
        self._metrics.inc("devreg_embedded_rollovers_total")
        self._metrics.inc("devreg_embedded_rollover_backlog_records_total", backlog)
        self._metrics.observe("devreg_embedded_rollover_seconds", held)
        log.info(
            "gave the embedded broker fresh partitions in %.0f ms (%d records past the kept"
            " log written back): %s",
            held * 1000,
            sum(len(r) for r in beyond.values()),
            restored.describe(),
        )
        return restored
