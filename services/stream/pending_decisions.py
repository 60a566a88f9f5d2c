"""Decisions published but not committed yet, which the next batch must decide on top of.

The command processor overlaps batches (services/stream/processor.py): while batch N waits for
Kafka's acknowledgement and its SQLite commit, batch N+1 is decided. N+1 must then see N's
device states, outcomes and channels although the decision store does not have them yet:
they are kept here from the moment N is decided until N is committed.
"""

from __future__ import annotations

from collections.abc import Iterable

from events import DeviceState, Outcome
from services.stream.decision_store import DecisionBatch, Holder

Key = tuple[str, str]


class PendingDecisions:
    def __init__(self) -> None:
        self.states: dict[Key, DeviceState] = {}
        self.outcomes: dict[Key, Outcome] = {}
        self.channels: set[Key] = set()
        self.next_offsets: dict[tuple[str, int], int] = {}
        self._batches: list[DecisionBatch] = []  # for the token fingerprints, in order

    def add(self, batch: DecisionBatch) -> None:
        self._batches.append(batch)
        self.states.update(batch.states)
        self.outcomes.update(batch.outcomes)
        self.channels.update(batch.channels)
        for p in batch.positions:
            self.next_offsets[(p.topic, p.partition)] = p.next_offset

    def settle(self, batch: DecisionBatch) -> None:
        """`batch` is committed: forget what no later batch has replaced since."""
        self._batches = [b for b in self._batches if b is not batch]
        for key, state in batch.states.items():
            if self.states.get(key) is state:
                del self.states[key]
        for key, outcome in batch.outcomes.items():
            if self.outcomes.get(key) is outcome:
                del self.outcomes[key]
        self.channels.difference_update(batch.channels)
        for p in batch.positions:
            if self.next_offsets.get((p.topic, p.partition)) == p.next_offset:
                del self.next_offsets[(p.topic, p.partition)]

    def over_states(
        self, keys: Iterable[Key], stored: dict[Key, DeviceState]
    ) -> dict[Key, DeviceState]:
        return {**stored, **{k: self.states[k] for k in keys if k in self.states}}

    def over_outcomes(self, keys: Iterable[Key], stored: dict[Key, Outcome]) -> dict[Key, Outcome]:
        return {**stored, **{k: self.outcomes[k] for k in keys if k in self.outcomes}}

    def over_fingerprints(
        self, keys: Iterable[Key], stored: dict[Key, set[str]]
    ) -> dict[Key, set[str]]:
        """The token fingerprints each device has claimed, with the pending batches' changes."""
        wanted = set(keys)
        found = {k: set(v) for k, v in stored.items()}
        for batch in self._batches:
            for key in batch.unfingerprinted & wanted:
                found.pop(key, None)
            for key, fps in batch.fingerprints.items():
                if key in wanted:
                    found.setdefault(key, set()).update(fps)
        return found

    def over_holders(self, keys: Iterable[Key], stored: dict[Key, Holder]) -> dict[Key, Holder]:
        """Each device's token fingerprint as known, with the pending batches' changes (a
        forget drops it)."""
        wanted = set(keys)
        found = dict(stored)
        for batch in self._batches:
            for key in batch.unfingerprinted & wanted:
                found.pop(key, None)
            found.update((k, h) for k, h in batch.holders.items() if k in wanted)
        return found
