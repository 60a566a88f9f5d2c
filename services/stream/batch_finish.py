"""What happens to a decided batch once the processor has sent it (services/stream/processor.py):
Kafka's acknowledgement, the kept log (embedded mode), the erasure of forgotten devices' keys,
then the commit of the decisions with the folds into the projection and the token index, in
order, and last the outcomes, for read-your-writes. It runs in the background while the next
batch is decided.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from projections.positions import Record
from services.config import Settings
from services.log.journal import Keep
from services.metrics import Metrics
from services.stream.batch_sender import BatchSender, Emission, Sent
from services.stream.commit_hold import CommitHold
from services.stream.decision_store import DecisionBatch, DecisionStore
from services.stream.pending_decisions import PendingDecisions
from services.stream.sealing import Sealing
from services.stream.token_lane import Landed
from services.stream.visibility import Decided, Visibility

FoldOwn = Callable[[Sequence[Record]], Awaitable[None]]


class BatchFinish:
    def __init__(
        self,
        settings: Settings,
        store: DecisionStore,
        sender: BatchSender,
        pending: PendingDecisions,
        visibility: Visibility,
        metrics: Metrics,
        hold: CommitHold,
        fold_own: FoldOwn,
        fold_tokens: FoldOwn | None,
        keep: Keep | None,
        sealing: Sealing | None,
    ):
        self._settings = settings
        self._store = store
        self._sender = sender
        self._pending = pending
        self._visibility = visibility
        self._metrics = metrics
        self._hold = hold
        # Folds the batch's acknowledged events into the projection (Projector.handle_own),
        # and its claims and releases into the token index (TokenRelay.handle_own), beside
        # the decisions' commit.
        self._fold_own = fold_own
        self._fold_tokens = fold_tokens
        self._keep = keep
        self._sealing = sealing

    async def finish(
        self,
        previous: asyncio.Future[None] | None,
        batch: DecisionBatch,
        commands: list[Record],
        emissions: list[Emission],
        sent: Sent,
        deferred: asyncio.Future[Landed] | None,
    ) -> None:
        """Acknowledged by Kafka, kept (embedded mode), then committed in order: a batch
        commits after the one before it, so the stored positions never run ahead of an
        uncommitted batch, nor of the kept log."""
        await self._hold.passed()  # an expiry burst still being sent (commit_hold.py)
        acknowledged = await self._sender.acknowledged(sent)
        batches = sent.batches.sent_per_partition
        if deferred is not None:  # its token records, sent after the burst (token_lane.py)
            landed = await deferred
            acknowledged.others.extend(landed.records)
            batches = {**batches, **landed.batches}
        if previous is not None:
            await asyncio.shield(previous)
        if self._keep is not None:
            # Two calls: the commands read from the log may each be a batch of its own, what
            # the batch wrote went out in `sent.batches` (the renewal counts objects: Keep).
            await self._keep(commands)
            produced = [*acknowledged.events, *acknowledged.others]
            await self._keep(produced, batches)
        # Erased once the forget events are kept: a crash before the erasure decides them
        # again (the same events) and erases again; one after it finds the keys gone.
        if self._sealing is not None:
            await self._sealing.erase_forgotten(e for em in emissions for e in em.events)
        folds = [self._store.commit(batch), self._fold_own(acknowledged.events)]
        tokens = [r for r in acknowledged.others if r.topic == self._settings.tokens_topic]
        if self._fold_tokens is not None and tokens:
            folds.append(self._fold_tokens(tokens))
        await asyncio.gather(*folds)
        self._pending.settle(batch)
        for emission, last_event in zip(emissions, acknowledged.last_events, strict=True):
            if emission.outcome is None:
                continue  # sent again sealed: the copy's decision is the command's
            self._visibility.decided(Decided(emission.outcome, last_event))
            code = str(emission.outcome.code or 0)
            self._metrics.inc("devreg_outcomes_total", code=code)
