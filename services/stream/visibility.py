"""Read-your-writes: lets an HTTP request wait until its command is decided and visible.

The command processor reports each decision; the projector reports the positions it has
applied. Both live in this worker (it owns every partition in single-worker mode).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Iterable

import msgspec

from events import Outcome
from projections.positions import Position


class Decided(msgspec.Struct, frozen=True):
    outcome: Outcome
    # Where the command's last event landed on the events topic: (partition, offset).
    last_event: tuple[int, int] | None


class Visibility:
    def __init__(self, events_topic: str, applied: Iterable[Position] = ()):
        self._events_topic = events_topic
        self._decisions: dict[tuple[str, str], asyncio.Future[Decided]] = {}
        self._applied: dict[int, int] = {}
        self._emitted: dict[int, int] = {}
        # Per events partition, a heap of (offset, tie-breaker, future): an applied batch
        # wakes the waiters it reached and looks at no other.
        self._waiting: dict[int, list[tuple[int, int, asyncio.Future[None]]]] = {}
        self._tie = itertools.count()
        self.applied(applied)

    def expect(self, app_id: str, command_id: str) -> asyncio.Future[Decided]:
        """Register interest before the command is sent, so a fast decision is not missed."""
        future: asyncio.Future[Decided] = asyncio.get_running_loop().create_future()
        self._decisions[(app_id, command_id)] = future
        return future

    def forget(self, app_id: str, command_id: str) -> None:
        self._decisions.pop((app_id, command_id), None)

    def decided(self, decided: Decided) -> None:
        key = (decided.outcome.app_id, decided.outcome.command_id)
        future = self._decisions.pop(key, None)
        if future is not None and not future.done():
            future.set_result(decided)

    def emitted(self, partition: int, offset: int) -> None:
        """The command processor published an event at (partition, offset)."""
        self._emitted[partition] = max(self._emitted.get(partition, 0), offset + 1)

    def lag(self) -> dict[int, int]:
        """Events emitted by this worker and not yet applied, per events partition."""
        return {p: max(n - self._applied.get(p, 0), 0) for p, n in sorted(self._emitted.items())}

    def applied(self, positions: Iterable[Position]) -> None:
        for p in positions:
            if p.topic != self._events_topic:
                continue
            applied = max(self._applied.get(p.partition, 0), p.next_offset)
            self._applied[p.partition] = applied
            waiting = self._waiting.get(p.partition)
            while waiting and waiting[0][0] < applied:
                future = heapq.heappop(waiting)[2]
                if not future.done():  # a waiter whose request timed out is cancelled
                    future.set_result(None)

    async def wait_applied(self, partition: int, offset: int) -> None:
        """Return once the projection has applied the event at (partition, offset)."""
        if self._applied.get(partition, 0) > offset:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (offset, next(self._tie), future)
        heapq.heappush(self._waiting.setdefault(partition, []), entry)
        await future
