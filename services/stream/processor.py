"""The command processor: the only writer of device events (docs/design.md §2, §4).

Per batch: decode, look up state, decide, publish events and outcomes and wait for Kafka to
acknowledge them, and only then commit the new decision state with the commands positions.
A crash between the two re-processes the batch, which re-emits identical events (same ids,
versions, hashes) that every reader skips.

Batches overlap: once batch N is sent, batch N+1 is decided (on top of N's decisions, kept in
PendingDecisions) while N waits for its acknowledgement and commit (batch_finish.py); commits
stay in order.

Two callers hand it commands, one at a time (`_turn`): faust's agent, with what it read from
the log, and the hand-off (services/stream/hand_off.py), with the worker's own commands as
Kafka acknowledged them. Either way a partition's commands are decided in log order: a record
below the next offset is skipped (decided already), and the hand-off only passes runs that
continue exactly from it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaProducer

from events import (
    ExpireRegistrations,
)
from projections.positions import Record, last_positions
from services.config import Settings
from services.log.journal import Keep
from services.metrics import Metrics
from services.stream.batch_finish import BatchFinish, FoldOwn
from services.stream.batch_sender import BatchSender, Dead, Emission
from services.stream.command_records import channel_keys, device_keys, parse
from services.stream.commit_hold import CommitHold
from services.stream.decider import Decider
from services.stream.decision_store import DecisionBatch, DecisionStore
from services.stream.gate import Gate
from services.stream.pending_decisions import PendingDecisions
from services.stream.prepared_expiries import AheadDecisions
from services.stream.sealing import Sealing
from services.stream.token_claims import Out, TokenClaims, Transition, changes
from services.stream.token_lane import TokenLane
from services.stream.visibility import Visibility

log = logging.getLogger(__name__)
Key = tuple[str, str]


AHEAD_IN_FLIGHT = 8  # batches of decisions made ahead sent before one's commit is awaited
# Chooses, while the processor is the caller's, which records to decide.
Pick = Callable[[], Sequence[Record]]


class CommandProcessor:
    def __init__(
        self,
        settings: Settings,
        store: DecisionStore,
        producer: AIOKafkaProducer,
        visibility: Visibility,
        metrics: Metrics,
        partition_of: Callable[[str, str], int],
        on_failure: Callable[[BaseException], None],
        fold_own: FoldOwn,
        sealing: Sealing | None,
        claims: TokenClaims | None = None,
        keep: Keep | None = None,
        gate: Gate | None = None,
        fold_tokens: FoldOwn | None = None,
    ):
        # None only where a test drives the processor with raw values and no keys.
        self._sealing = sealing
        self._claims = claims
        self._gate = gate or Gate()  # closed while the embedded broker is renewed
        self._settings = settings
        self._store = store
        self._metrics = metrics
        # A batch finishing in the background cannot raise into the agent: it reports here,
        # and the worker stops (a restart resumes from the stores' positions).
        self._on_failure = on_failure
        self._pending = PendingDecisions()
        self._decider = Decider(settings, metrics, partition_of)
        self._sender = BatchSender(settings, producer, visibility, metrics)
        self._finishing: asyncio.Future[None] | None = None
        self._in_flight = 0  # batches sent and not finished
        self._turn = asyncio.Lock()  # the agent and the hand-off decide one at a time
        self._ahead = AheadDecisions(
            settings, store, self._pending, self._decider, metrics, self._token_records
        )
        self._hold = CommitHold(self._ahead.kept.due, self._held_back)
        self._lane = TokenLane(producer, settings.tokens_topic)
        self._finisher = BatchFinish(
            settings,
            store,
            self._sender,
            self._pending,
            visibility,
            metrics,
            self._hold,
            fold_own,
            fold_tokens,
            keep,
            sealing,
        )

    @property
    def in_flight(self) -> bool:
        """Whether batches were sent and not yet folded (services/stream/read_back.py)."""
        return self._in_flight > 0

    @property
    def holding(self) -> bool:
        """Whether an expiry burst's commits are held while it is sent (commit_hold.py)."""
        return self._hold.active

    def next_offset(self, partition: int) -> int:
        """The next commands offset to decide on `partition` (batches in flight included)."""
        key = (self._settings.commands_topic, partition)
        pending = self._pending.next_offsets.get(key)
        return pending if pending is not None else self._store.next_offsets.get(key, 0)

    async def handle(self, records: Sequence[Record]) -> None:
        """Decide a batch and send its events and outcomes; the acknowledgement, the commit
        and the notifications finish in the background while the next batch is decided.
        Returns once the previous batch has finished (at most two batches in flight per
        caller). Both callers pass the gate first: nothing is sent while the embedded
        broker's topics are renewed (services/log/rollover.py)."""
        async with self._gate.passage(), self._turn:
            previous = await self._send(records)
        await self._after(previous)

    async def handle_picked(self, pick: Pick) -> None:
        """Decide what `pick` chooses once it is this caller's turn: the hand-off's choice
        depends on the next offsets and the ownership at that moment, not before."""
        async with self._gate.passage(), self._turn:
            previous = await self._send(pick())
        await self._after(previous)

    async def turn_over(self) -> None:
        """Wait until a batch being decided has been handed to the producer."""
        async with self._turn:
            pass

    @staticmethod
    async def _after(previous: asyncio.Future[None] | None) -> None:
        if previous is not None:
            # Shielded: stopping the agent must not cancel a commit halfway through its steps.
            await asyncio.shield(previous)

    async def _send(self, records: Sequence[Record]) -> asyncio.Future[None] | None:
        """Decide the records not decided yet and hand their events and outcomes to the
        producer; returns the batch before (to wait for outside the turn), if any."""
        pending = self._pending
        nxt = {**self._store.next_offsets, **pending.next_offsets}
        fresh = [r for r in records if r.offset >= nxt.get((r.topic, r.partition), 0)]
        if not fresh:
            return None
        parsed = [(r, parse(r, self._settings.token_keys)) for r in fresh]
        commands = [c for _, c in parsed if not isinstance(c, Dead)]
        # Expiries decided ahead (prepared_expiries.py): neither their devices' states nor their
        # outcomes are loaded (one kept has none stored; a repeat in flight is seen in memory).
        ahead = {id(c) for c in commands if self._ahead.kept.has((c.app_id, c.command_id))}
        devices = [k for c in commands if id(c) not in ahead for k in device_keys(c)]
        ids = [(c.app_id, c.command_id) for c in commands if id(c) not in ahead]
        states = pending.over_states(devices, await self._store.load_states(devices))
        seen = pending.over_outcomes(ids, await self._store.load_outcomes(ids))
        known = await self._store.load_channels(k for c in commands for k in channel_keys(c))
        known |= pending.channels
        batch = DecisionBatch(positions=last_positions(fresh))
        copies = {}
        if self._sealing is not None:
            copies = await self._sealing.copies_of(parsed, seen, self._decider.misdirected)
        emissions: list[Emission] = []
        dead: list[Dead] = []
        transitions: list[Transition] = []
        tokens_ahead: list[Out] = []
        used_ahead = 0
        for record, command in parsed:
            if isinstance(command, Dead):
                dead.append(command)
                continue
            if id(command) in copies:
                emissions.append(Emission(record, None, resent=copies[id(command)]))
                continue
            keys = device_keys(command)
            prepared = None
            if id(command) in ahead:
                prepared = self._ahead.use(record, command, seen, batch)
                if prepared is None:  # dropped since: decided as any other, on loaded states
                    states.update(pending.over_states(keys, await self._store.load_states(keys)))
                    one = [(command.app_id, command.command_id)]
                    seen.update(pending.over_outcomes(one, await self._store.load_outcomes(one)))
            if prepared is not None:
                emissions.append(
                    Emission(record, prepared.outcome, prepared.events, encoded=prepared.encoded)
                )
                tokens_ahead.extend(prepared.tokens)
                used_ahead += 1
                continue
            before = [batch.states.get(k) or states.get(k) for k in keys]
            emission = self._decider.decide(record, command, states, seen, known, batch)
            emissions.append(emission)
            if emission.events:
                transitions.extend(changes(keys, before, batch.states, emission.events))
                self._ahead.decided_on(keys)
        tokens = await self._token_records(transitions, batch, devices) + tokens_ahead
        deferred = None
        if tokens and (self._hold.active or self._lane.queued):
            deferred, tokens = self._lane.defer(tokens), []  # after the burst (token_lane.py)
        sent = await self._sender.send(emissions, dead, tokens)
        afresh = len(emissions) + len(dead) > used_ahead
        pending.add(batch)
        previous = self._finishing
        finish = self._finisher.finish(previous, batch, fresh, emissions, sent, deferred)
        finishing = asyncio.ensure_future(finish)
        finishing.add_done_callback(self._finished)
        self._finishing = finishing
        self._in_flight += 1
        self._hold.after_sending(afresh)
        if not self._hold.active:
            await self._lane.flush()
        # A batch of decisions made ahead costs little to send: the next is decided without
        # waiting for this one's commit. While the burst's commits are held (commit_hold.py)
        # nothing is waited for; otherwise up to AHEAD_IN_FLIGHT batches (further, the write-
        # through lags so far behind that the events' read-back folds them instead, at several
        # times the cost: docs/benchmarks.md). Commits still follow in order.
        if afresh or (self._in_flight > AHEAD_IN_FLIGHT and not self._hold.active):
            return previous
        return None

    async def prepare(self, commands: Sequence[tuple[int, ExpireRegistrations]]) -> int:
        """Decide these expiry commands (each with its commands partition) now, ahead of their
        instant, and keep each decision for when the command arrives from the log
        (services/stream/prepared_expiries.py). One command per turn, so that what arrives
        meanwhile is decided in between. Returns how many were kept."""
        kept = 0
        for partition, command in commands:
            async with self._gate.passage(), self._turn:
                kept += await self._ahead.prepare(partition, command)
        return kept

    def hold_commits(self) -> bool:
        """The scheduler is about to send an instant's commands decided ahead: hold the
        commits until they are sent (commit_hold.py). False if none is kept."""
        return self._hold.begin()

    def _held_back(self, why: str) -> None:
        """The hold ended. Where that was outside a batch (its time ran out, a drain, a
        rebalance), the token records it kept back go out in the processor's turn, before any
        later batch's."""
        self._metrics.inc("devreg_expiry_bursts_held_total", ended=why)
        if self._lane.queued:
            task = asyncio.ensure_future(self._flush_lane())
            task.add_done_callback(self._finished_flush)

    async def _flush_lane(self) -> None:
        async with self._turn:
            await self._lane.flush()

    def _finished_flush(self, task: asyncio.Future[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._on_failure(task.exception())  # type: ignore[arg-type]

    def forget_prepared(self) -> None:
        """The partitions were taken away (a rebalance): decisions prepared on them go."""
        self._ahead.kept.clear()
        self._hold.release("rebalance")

    async def _token_records(
        self, transitions: list[Transition], batch: DecisionBatch, devices: list[Key]
    ) -> list[tuple[int, bytes, bytes | None]]:
        if self._claims is None or not transitions:
            return []
        changed = {(t.after.app_id, t.after.device_id) for t in transitions}
        # Every fingerprint a device claimed is wanted only where it is forgotten: not loaded
        # for the rest (a query per batch saved in a burst of expiries: docs/benchmarks.md).
        forgotten = {(t.after.app_id, t.after.device_id) for t in transitions if t.forgets}
        stored = await self._store.load_fingerprints(forgotten) if forgotten else {}
        known = self._pending.over_fingerprints(forgotten, stored)
        holders = self._pending.over_holders(changed, await self._store.load_holders(changed))
        return await self._claims.records(transitions, batch, known, holders)

    async def drain(self) -> None:
        """Wait until every batch handed to `handle` is committed (or has failed, which
        `on_failure` reports): before positions are read for a seek, and before stopping."""
        self._hold.release("drain")
        if self._finishing is not None:
            await asyncio.wait([self._finishing])

    async def close(self) -> None:
        await self.drain()

    def _finished(self, task: asyncio.Future[None]) -> None:
        self._in_flight -= 1
        if not task.cancelled() and task.exception() is not None:
            self._on_failure(task.exception())  # type: ignore[arg-type]
