"""Expiry decisions made ahead of their instant, the processor's side (docs/design.md §7).

A burst of expiries costs the processor most of its work per device: loading each state,
deciding, hashing, working out the token releases. The scheduler knows a burst before it is
due, so it hands the processor the very commands it will send at the instant
(services/stream/scheduler.py), and the processor decides each of them then, on the states
as they are, without sending anything. What it keeps here is that decision. When the command
itself arrives from the log, the processor uses the kept decision instead of deciding again,
but only if no device of it was decided on since: any decision of one of its devices drops
it (`invalidate`), and the command is decided as any other.

So a kept decision is always the one deciding afresh would give (same state, same command,
the time taken from the command): the log, the ids and a crash's re-processing are exactly
as without it. Nothing here is durable; a restart prepares nothing, and decides as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence

import msgspec

from events import AnyCommand, AnyEvent, ExpireRegistrations, Outcome
from events.identity import partition_key
from projections.positions import Record
from services.config import Settings
from services.metrics import Metrics
from services.stream.batch_sender import BatchSender
from services.stream.command_records import device_keys
from services.stream.decider import Decider
from services.stream.decision_store import DecisionBatch, DecisionStore
from services.stream.pending_decisions import PendingDecisions
from services.stream.token_claims import Out, Transition, changes

Key = tuple[str, str]
TokenRecords = Callable[[list[Transition], DecisionBatch, list[Key]], Awaitable[list[Out]]]


class Prepared(msgspec.Struct):
    """One command's decision, made ahead: what the processor would have decided for it."""

    command: ExpireRegistrations
    partition: int  # the commands partition it was decided for
    outcome: Outcome
    events: tuple[AnyEvent, ...]
    encoded: tuple[tuple[bytes, bytes], ...]  # the events' records (key, value), made ahead too
    batch: DecisionBatch  # the states, outcome and token holders it changes
    tokens: list[Out]  # its records for the tokens topic
    keys: list[Key]  # its devices


def absorb(batch: DecisionBatch, prepared: DecisionBatch) -> None:
    """Add a prepared command's changes to the batch that uses it."""
    batch.states.update(prepared.states)
    batch.outcomes.update(prepared.outcomes)
    batch.partitions.update(prepared.partitions)
    batch.holders.update(prepared.holders)
    batch.unfingerprinted |= prepared.unfingerprinted
    for key, fps in prepared.fingerprints.items():
        batch.fingerprints.setdefault(key, set()).update(fps)


class PreparedExpiries:
    """The kept decisions, by command, within a budget of devices (memory: a kept device is
    its new state, its event and its token record, about 2 KiB)."""

    def __init__(self, limit: int):
        self._limit = limit
        self._by_command: dict[Key, Prepared] = {}
        self._by_device: dict[Key, Key] = {}  # device -> the kept command naming it

    @property
    def devices(self) -> int:
        return len(self._by_device)

    def has(self, command: Key) -> bool:
        return command in self._by_command

    def due(self, now_ms: int) -> bool:
        """Whether a kept command's instant has come (its command is on its way)."""
        return any((p.command.issued_at or 0) <= now_ms for p in self._by_command.values())

    def room_for(self, devices: int) -> bool:
        return self.devices + devices <= self._limit

    def keep(self, prepared: Prepared) -> bool:
        """Keep `prepared`, unless a device of it is named by a kept command already (two
        instants: the later decision assumed the earlier had not happened, so only the first
        is kept); returns whether it was kept."""
        key = (prepared.command.app_id, prepared.command.command_id)
        if key in self._by_command or any(k in self._by_device for k in prepared.keys):
            return False
        self._by_command[key] = prepared
        for device in prepared.keys:
            self._by_device[device] = key
        return True

    def take(self, command: ExpireRegistrations, partition: int) -> Prepared | None:
        """The kept decision for exactly this command on this partition, if still valid; it
        is no longer kept either way."""
        prepared = self._drop((command.app_id, command.command_id))
        if prepared is None or prepared.partition != partition or prepared.command != command:
            return None
        return prepared

    def invalidate(self, devices: Iterable[Key]) -> int:
        """These devices were decided on: the kept commands naming them are dropped. Returns
        how many were."""
        dropped = 0
        for device in devices:
            command = self._by_device.get(device)
            if command is not None and self._drop(command) is not None:
                dropped += 1
        return dropped

    def clear(self) -> None:
        self._by_command.clear()
        self._by_device.clear()

    def _drop(self, command: Key) -> Prepared | None:
        prepared = self._by_command.pop(command, None)
        if prepared is not None:
            for device in prepared.keys:
                self._by_device.pop(device, None)
        return prepared


class AheadDecisions:
    """The processor's side: deciding a command ahead (`prepare`, in the processor's turn),
    using the decision when the command arrives (`use`), dropping it when a device of it is
    decided on meanwhile (`decided_on`)."""

    def __init__(
        self,
        settings: Settings,
        store: DecisionStore,
        pending: PendingDecisions,
        decider: Decider,
        metrics: Metrics,
        token_records: TokenRecords,
    ):
        self.kept = PreparedExpiries(settings.expiry_prepared_max)
        self._settings = settings
        self._store = store
        self._pending = pending
        self._decider = decider
        self._metrics = metrics
        self._token_records = token_records

    async def prepare(self, partition: int, command: ExpireRegistrations) -> bool:
        """Decide `command` as it will arrive on `partition`, and keep the decision; False
        if it is not kept (kept already, over the budget, decided already, misdirected)."""
        key = (command.app_id, command.command_id)
        keys = device_keys(command)
        if self.kept.has(key) or not self.kept.room_for(len(keys)):
            return False
        if key in self._pending.over_outcomes([key], await self._store.load_outcomes([key])):
            return False  # decided already: a repeat gets its first outcome
        first = command.devices[0].device_id if command.devices else ""
        record = Record(
            self._settings.commands_topic,
            partition,
            -1,  # not in the log yet: only the partition and the time are read
            command.issued_at or 0,
            partition_key(command.app_id, first),
            None,
        )
        if self._decider.misdirected(record, command) is not None:
            return False
        states = self._pending.over_states(keys, await self._store.load_states(keys))
        before = [states.get(k) for k in keys]
        batch = DecisionBatch()
        emission = self._decider.decide(record, command, states, {}, set(), batch, count=False)
        outcome = emission.outcome
        assert outcome is not None
        tokens = await self._token_records(
            changes(keys, before, batch.states, emission.events), batch, keys
        )
        encoded = BatchSender.records(emission.events, record.key or b"", outcome.device_id)
        events = emission.events
        kept = self.kept.keep(
            Prepared(command, partition, outcome, events, tuple(encoded), batch, tokens, keys)
        )
        if kept:
            self._metrics.inc("devreg_expiry_prepared_total", result="kept")
        return kept

    def use(
        self,
        record: Record,
        command: AnyCommand,
        seen: dict[Key, Outcome],
        batch: DecisionBatch,
    ) -> Prepared | None:
        """The decision kept for `command`, added to `batch`; None if there is none, or the
        command is a repeat (answered with its first outcome, as ever)."""
        if not isinstance(command, ExpireRegistrations):
            return None
        key = (command.app_id, command.command_id)
        prepared = self.kept.take(command, record.partition)
        if prepared is None or any(
            key in o for o in (seen, batch.outcomes, self._pending.outcomes)
        ):
            return None
        absorb(batch, prepared.batch)
        result = "accepted" if prepared.outcome.accepted else "rejected"
        self._metrics.inc("devreg_commands_total", result=result)
        self._metrics.inc("devreg_expiry_prepared_total", result="used")
        return prepared

    def decided_on(self, keys: Sequence[Key]) -> None:
        """A decision changed these devices: decisions kept on their old states go."""
        if self.kept.devices:
            dropped = self.kept.invalidate(keys)
            if dropped:
                self._metrics.inc("devreg_expiry_prepared_total", dropped, result="dropped")
