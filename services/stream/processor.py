"""The command processor: the only writer of device events (docs/design.md §2, §4).

Per batch: decode, look up state, decide, publish events and outcomes and wait for Kafka to
acknowledge them, and only then commit the new decision state with the commands positions.
A crash between the two re-processes the batch, which re-emits identical events (same ids,
versions, hashes) that every reader skips.

Batches overlap: once batch N is sent, batch N+1 is decided (on top of N's decisions, kept in
PendingDecisions) while N waits for its acknowledgement and commit; commits stay in order.

Two callers hand it commands, one at a time (`_turn`): faust's agent, with what it read from
the log, and the hand-off (services/stream/hand_off.py), with the worker's own commands as
Kafka acknowledged them. Either way a partition's commands are decided in log order: a record
below the next offset is skipped (decided already), and the hand-off only passes runs that
continue exactly from it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaProducer

from events import (
    AnyCommand,
    ChannelCreated,
    Decision,
    DeviceState,
    ExpireRegistrations,
    Outcome,
    decide,
    decide_expiries,
    empty_state,
    evolve,
)
from projections.positions import Record, last_positions
from services.config import Settings
from services.metrics import Metrics
from services.stream.batch_sender import BatchSender, Dead, Emission, Sent
from services.stream.command_records import (
    Channels,
    channel_keys,
    device_keys,
    misdirected,
    parse,
)
from services.stream.decision_store import DecisionBatch, DecisionStore
from services.stream.pending_decisions import PendingDecisions
from services.stream.visibility import Decided, Visibility

log = logging.getLogger(__name__)
Key = tuple[str, str]


FoldOwn = Callable[[Sequence[Record]], Awaitable[None]]
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
    ):
        self._partition_of = partition_of  # the commands partition of a device's key
        self._settings = settings
        self._store = store
        self._visibility = visibility
        self._metrics = metrics
        # A batch finishing in the background cannot raise into the agent: it reports here,
        # and the worker stops (a restart resumes from the stores' positions).
        self._on_failure = on_failure
        # Folds this batch's acknowledged events into the projection (Projector.handle_own),
        # while the decisions commit: both are SQLite work on threads of their own.
        self._fold_own = fold_own
        self._pending = PendingDecisions()
        self._sender = BatchSender(settings, producer, visibility, metrics)
        self._finishing: asyncio.Future[None] | None = None
        self._turn = asyncio.Lock()  # the agent and the hand-off decide one at a time

    def next_offset(self, partition: int) -> int:
        """The next commands offset to decide on `partition` (batches in flight included)."""
        key = (self._settings.commands_topic, partition)
        pending = self._pending.next_offsets.get(key)
        return pending if pending is not None else self._store.next_offsets.get(key, 0)

    async def handle(self, records: Sequence[Record]) -> None:
        """Decide a batch and send its events and outcomes; the acknowledgement, the commit
        and the notifications finish in the background while the next batch is decided.
        Returns once the previous batch has finished (at most two batches in flight per
        caller)."""
        async with self._turn:
            previous = await self._send(records)
        await self._after(previous)

    async def handle_picked(self, pick: Pick) -> None:
        """Decide what `pick` chooses once it is this caller's turn: the hand-off's choice
        depends on the next offsets and the ownership at that moment, not before."""
        async with self._turn:
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
        devices = [k for c in commands for k in device_keys(c)]
        ids = [(c.app_id, c.command_id) for c in commands]
        states = pending.over_states(devices, await self._store.load_states(devices))
        seen = pending.over_outcomes(ids, await self._store.load_outcomes(ids))
        known = await self._store.load_channels(k for c in commands for k in channel_keys(c))
        known |= pending.channels
        batch = DecisionBatch(positions=last_positions(fresh))
        emissions: list[Emission] = []
        dead: list[Dead] = []
        for record, command in parsed:
            if isinstance(command, Dead):
                dead.append(command)
                continue
            emissions.append(self._decide(record, command, states, seen, known, batch))
        sent = await self._sender.send(emissions, dead)
        pending.add(batch)
        previous = self._finishing
        finishing = asyncio.ensure_future(self._finish(previous, batch, emissions, sent))
        finishing.add_done_callback(self._finished)
        self._finishing = finishing
        return previous

    async def drain(self) -> None:
        """Wait until every batch handed to `handle` is committed (or has failed, which
        `on_failure` reports): before positions are read for a seek, and before stopping."""
        if self._finishing is not None:
            await asyncio.wait([self._finishing])

    async def close(self) -> None:
        await self.drain()

    def _finished(self, task: asyncio.Future[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._on_failure(task.exception())  # type: ignore[arg-type]

    async def _finish(
        self,
        previous: asyncio.Future[None] | None,
        batch: DecisionBatch,
        emissions: list[Emission],
        sent: Sent,
    ) -> None:
        """Acknowledged by Kafka, then committed in order: a batch commits after the one
        before it, so the stored positions never run ahead of an uncommitted batch."""
        last_events, acknowledged = await self._sender.acknowledged(sent)
        if previous is not None:
            await asyncio.shield(previous)
        await asyncio.gather(self._store.commit(batch), self._fold_own(acknowledged))
        self._pending.settle(batch)
        for emission, last_event in zip(emissions, last_events, strict=True):
            self._visibility.decided(Decided(emission.outcome, last_event))
            code = str(emission.outcome.code or 0)
            self._metrics.inc("devreg_outcomes_total", code=code)

    def _decide(
        self,
        record: Record,
        command: AnyCommand,
        states: dict[Key, DeviceState],
        seen: dict[Key, Outcome],
        known: set[Key],
        batch: DecisionBatch,
    ) -> Emission:
        outcome_key = (command.app_id, command.command_id)
        earlier = batch.outcomes.get(outcome_key) or seen.get(outcome_key)
        if earlier is not None:
            self._metrics.inc("devreg_commands_total", result="repeated")
            return Emission(record, earlier)
        now = command.issued_at or record.timestamp
        if rejection := misdirected(self._settings, self._partition_of, record, command):
            outcome = Outcome(
                command_id=command.command_id,
                app_id=command.app_id,
                device_id=command.device_id,
                accepted=False,
                decided_at=now,
                code=rejection.code,
                message=rejection.message,
            )
            batch.outcomes[outcome_key] = outcome
            self._metrics.inc("devreg_commands_total", result="rejected")
            return Emission(record, outcome)
        if isinstance(command, ExpireRegistrations):
            decision = self._decide_expiries(command, states, batch, now)
        else:
            key = (command.app_id, command.device_id)
            state = batch.states.get(key) or states.get(key) or empty_state(*key)
            decision = decide(state, Channels(command.app_id, known, batch.channels), command, now)
            for event in decision.events:
                if isinstance(event, ChannelCreated):
                    batch.channels.add((event.app_id, event.channel))
                else:
                    state = evolve(state, event)
            if decision.events:
                batch.states[key] = state
        batch.outcomes[outcome_key] = decision.outcome
        result = "accepted" if decision.outcome.accepted else "rejected"
        if log.isEnabledFor(logging.DEBUG):  # its arguments cost more than the rest of this
            self._log_decision(record, command, decision.outcome, result)
        self._metrics.inc("devreg_commands_total", result=result)
        return Emission(record, decision.outcome, decision.events)

    @staticmethod
    def _decide_expiries(
        command: ExpireRegistrations,
        states: dict[Key, DeviceState],
        batch: DecisionBatch,
        now: int,
    ) -> Decision:
        """Each device on its own state (this batch's, if an earlier command changed it)."""
        current: dict[Key, DeviceState] = {}
        for key in device_keys(command):
            state = batch.states.get(key) or states.get(key)
            if state is not None:
                current[key] = state
        decision = decide_expiries(current, command, now)
        for event in decision.events:
            if not isinstance(event, ChannelCreated):
                key = (event.app_id, event.device_id)
                current[key] = batch.states[key] = evolve(current[key], event)
        return decision

    def _log_decision(
        self, record: Record, command: AnyCommand, outcome: Outcome, result: str
    ) -> None:
        log.debug(
            "command %s: %s%s",
            type(command).__name__,
            result,
            f" ({outcome.code}: {outcome.message})" if outcome.code else "",
            extra={
                "command_id": command.command_id,
                "app_id": command.app_id,
                "device_id": command.device_id,
                "partition": record.partition,
                "offset": record.offset,
            },
        )
