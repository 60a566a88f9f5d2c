"""Deciding one command of a batch: the processor's per-command step (services/stream/processor.py).

A repeated command id gets its first outcome; a command for an unknown app, or on another
partition than its device's, is rejected; anything else goes to `events.decide` against the
device's state as this batch leaves it (a command of many devices, `ExpireRegistrations`, to
`events.decide_expiries`, each device on its own state). The batch (DecisionBatch) collects
the new states, channels and outcomes the processor commits once Kafka has acknowledged the
events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

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
    rules,
)
from events.decision import reject
from projections.positions import Record
from services.config import Settings
from services.metrics import Metrics
from services.stream.batch_sender import Emission
from services.stream.command_records import Channels, device_keys, misdirected
from services.stream.decision_store import DecisionBatch

log = logging.getLogger(__name__)
Key = tuple[str, str]


class Decider:
    def __init__(
        self, settings: Settings, metrics: Metrics, partition_of: Callable[[str, str], int]
    ):
        self._settings = settings
        self._metrics = metrics
        self._partition_of = partition_of  # the commands partition of a device's key

    def decide(
        self,
        record: Record,
        command: AnyCommand,
        states: dict[Key, DeviceState],
        seen: dict[Key, Outcome],
        known: set[Key],
        batch: DecisionBatch,
        count: bool = True,
    ) -> Emission:
        """`count`: False where the decision is prepared ahead (services/stream/
        prepared_expiries.py): the metrics count it when it is used."""
        outcome_key = (command.app_id, command.command_id)
        earlier = batch.outcomes.get(outcome_key) or seen.get(outcome_key)
        if earlier is not None:
            self._metrics.inc("devreg_commands_total", result="repeated")
            return Emission(record, earlier)
        now = command.issued_at or record.timestamp
        if rejection := self.misdirected(record, command):
            outcome = reject(command, now, rejection).outcome
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
        for event in decision.events:
            if not isinstance(event, ChannelCreated):
                batch.partitions[(event.app_id, event.device_id)] = record.partition
        batch.outcomes[outcome_key] = decision.outcome
        result = "accepted" if decision.outcome.accepted else "rejected"
        if log.isEnabledFor(logging.DEBUG):  # its arguments cost more than the rest of this
            self._log_decision(record, command, decision.outcome, result)
        if count:
            self._metrics.inc("devreg_commands_total", result=result)
        return Emission(record, decision.outcome, decision.events)

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

    def misdirected(self, record: Record, command: AnyCommand) -> rules.Rejection | None:
        return misdirected(self._settings, self._partition_of, record, command)

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
