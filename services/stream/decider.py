"""Deciding one command of a batch: the processor's per-command step (services/stream/processor.py).

A repeated command id gets its first outcome; a command for an unknown app, or on another
partition than its device's, is rejected; anything else goes to `events.decide` against the
device's state as this batch leaves it. The batch (DecisionBatch) collects the new states,
channels and outcomes the processor commits once Kafka has acknowledged the events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec

from events import (
    AnyCommand,
    ChannelCreated,
    DeviceState,
    Outcome,
    RegisterDevice,
    decide,
    decode_command,
    empty_state,
    evolve,
    rules,
)
from events.user_tokens import TokenKeys, without_raw_token
from projections.positions import Record
from services.config import Settings
from services.metrics import Metrics
from services.stream.batch_sender import Dead, Emission
from services.stream.decision_store import DecisionBatch

log = logging.getLogger(__name__)
Key = tuple[str, str]


class _Channels:
    """`in` test for decide(): channels known for one app, before or during this batch."""

    def __init__(self, app_id: str, known: set[Key], added: set[Key]):
        self.app_id, self.known, self.added = app_id, known, added

    def __contains__(self, channel: object) -> bool:
        key = (self.app_id, str(channel))
        return key in self.known or key in self.added


def parse(record: Record, tokens: TokenKeys | None) -> AnyCommand | Dead:
    try:
        command = decode_command(record.value or b"")
    except msgspec.DecodeError as exc:
        return Dead(record, f"undecodable command: {exc}")
    if command.issued_at is None:
        # A producer that did not stamp the command: the record's own time is in the log too.
        command = msgspec.structs.replace(command, issued_at=record.timestamp)
    # The commands topic holds whatever a publisher wrote, raw session tokens included; no
    # event may: they become fingerprints before anything is decided.
    return without_raw_token(command, tokens)


def channel_keys(command: AnyCommand) -> list[Key]:
    if isinstance(command, RegisterDevice):
        names = command.channels or (rules.DEFAULT_CHANNEL,)
        return [(command.app_id, name) for name in names]
    return []


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
    ) -> Emission:
        outcome_key = (command.app_id, command.command_id)
        earlier = batch.outcomes.get(outcome_key) or seen.get(outcome_key)
        if earlier is not None:
            self._metrics.inc("devreg_commands_total", result="repeated")
            return Emission(record, earlier)
        now = command.issued_at or record.timestamp
        if rejection := self.misdirected(record, command):
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
        key = (command.app_id, command.device_id)
        state = batch.states.get(key) or states.get(key) or empty_state(*key)
        decision = decide(state, _Channels(command.app_id, known, batch.channels), command, now)
        for event in decision.events:
            if isinstance(event, ChannelCreated):
                batch.channels.add((event.app_id, event.channel))
            else:
                state = evolve(state, event)
        if decision.events:
            batch.states[key] = state
            batch.partitions[key] = record.partition
        batch.outcomes[outcome_key] = decision.outcome
        result = "accepted" if decision.outcome.accepted else "rejected"
        if log.isEnabledFor(logging.DEBUG):  # its arguments cost more than the rest of this
            self._log_decision(record, command, decision.outcome, result)
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
        """A command for an app devreg does not serve, or on another partition than its
        device's. All of a device's commands must come through the one partition its events
        go to: one elsewhere would fork the device's history across two partitions, in an
        order no reader can know, and stop the projector at the apparent gap."""
        if command.app_id not in self._settings.apps:
            return rules.Rejection(rules.UNKNOWN_APP, f"Unknown application id {command.app_id!r}")
        expected = self._partition_of(command.app_id, command.device_id)
        if record.partition != expected:
            message = (
                f"Command on partition {record.partition} of {record.topic}; the device's is"
                f" {expected}: publish it keyed by [app_id, device_id] with Kafka's default"
                " (murmur2) partitioner"
            )
            return rules.Rejection(rules.INVALID_REQUEST, message)
        return None
