"""The scheduler's side of expiries decided ahead of their instant (docs/design.md §7).

Whatever falls due within the lead (`DEVREG_EXPIRY_LEAD_MS`) is made into the commands the
scheduler will send at the instant, one per commands partition, app and expiration, each
issued at its expiration. They are handed to the processor at once, to decide while there is
time (services/stream/prepared_expiries.py), and kept here until the instant, when the
scheduler sends them as they are. Their rows are then skipped by the scheduler's next look at
what is due, once: the command sent carries them.

Each look ahead reads on from where the last one stopped. A row written later that sorts
before that point (device ids are random: most of a burst registered within the lead does)
is found by a look from the start of the window, at most every RESCAN_MS and only after the
projector wrote such a row; a row held already is skipped. One written after the last look
is sent as any other, once the commands sent at its instant are decided (at most a second
later): nothing depends on this for correctness, only for speed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from events import ExpireRegistrations, encode
from projections.store import DueExpiration, ExpiryCursor
from services.metrics import Metrics

log = logging.getLogger(__name__)
Key = tuple[str, str]
Prepare = Callable[[Sequence[tuple[int, ExpireRegistrations]]], Awaitable[int]]
# A row covered by a command sent ahead is skipped once; one never seen again (gone from the
# projection before the scheduler looked) is forgotten this long after its instant.
FORGET_AFTER_MS = 60_000
RESCAN_MS = 2000


class Ahead:
    def __init__(
        self,
        lead_ms: int,
        limit: int,
        prepare: Prepare | None,
        metrics: Metrics | None = None,
    ):
        self.lead_ms = lead_ms if prepare is not None and limit > 0 else 0
        self._limit = limit  # devices in commands held for their instant
        self._prepare = prepare
        self._metrics = metrics
        self.cursor: ExpiryCursor = (-(2**63), "", "")  # rows up to it were made into commands
        # By instant: each command with its partition and its encoding (made now: at the
        # instant every millisecond before the last device is sent counts).
        self._held: dict[int, list[tuple[int, ExpireRegistrations, bytes]]] = {}
        self._unsettled: list[tuple[int, bool, ExpireRegistrations]] = []  # see settle
        self._devices = 0
        self._covered: dict[int, set[Key]] = {}  # rows of commands sent, by expiration
        self._holding: dict[Key, int] = {}  # device -> the expiration a held command names
        self._newcomers = False  # a row was written that may sort before the cursor
        self._scanned_at = -(2**63)
        self._queue: asyncio.Queue[list[tuple[int, ExpireRegistrations]]] = asyncio.Queue()

    @property
    def on(self) -> bool:
        return self.lead_ms > 0

    def room(self) -> bool:
        return self._devices < self._limit

    def noticed(self, earliest_expiration: int) -> None:
        """The projector wrote expirations, the earliest this one."""
        if self.on and earliest_expiration <= self.cursor[0]:
            self._newcomers = True

    def start(self, now: int) -> ExpiryCursor:
        """Where the next look ahead starts: after the cursor, or at the start of the window
        when newcomers may be before it; never at a row due by `now` (those are the
        scheduler's to send as they are)."""
        window = (now + 1, "", "")
        if self._newcomers and now >= self._scanned_at + RESCAN_MS:
            self._newcomers, self._scanned_at = False, now
            return window
        return max(self.cursor, window)

    def rescan_at(self) -> int | None:
        """When to look from the start of the window again, if newcomers wait for it."""
        return self._scanned_at + RESCAN_MS if self._newcomers else None

    def holds(self, row: DueExpiration) -> bool:
        return self._holding.get((row.app_id, row.device_id)) == row.expiration

    def hold(self, commands: list[tuple[int, ExpireRegistrations]]) -> None:
        """Commands made from rows not held yet: held for their instant, and handed to the
        processor to decide now."""
        for partition, command in commands:
            instant = command.issued_at
            assert instant is not None  # issued at its expiration
            self._held.setdefault(instant, []).append((partition, command, encode(command)))
            self._devices += len(command.devices)
            self._holding.update(((command.app_id, d.device_id), instant) for d in command.devices)
        self._queue.put_nowait(commands)

    def due(
        self, now: int, owned: frozenset[int] | None = None
    ) -> list[tuple[ExpireRegistrations, bytes]]:
        """The held commands whose instant has come, to send now, each with its encoding.
        Those of a commands partition no longer `owned` (a rebalance) are dropped: their rows
        are the new owner's to expire. Nothing per device is done here: `settle`, once they
        are sent, covers their rows."""
        ready: list[tuple[ExpireRegistrations, bytes]] = []
        for instant in sorted(i for i in self._held if i <= now):
            for partition, command, encoded in self._held.pop(instant):
                self._devices -= len(command.devices)
                sent = owned is None or partition in owned
                self._unsettled.append((instant, sent, command))
                if sent:
                    ready.append((command, encoded))
        return ready

    def settle(self, now: int) -> None:
        """The rows of the commands `due` handed out are no longer held, and those sent are
        covered (skipped once by the scheduler's next look at what is due)."""
        unsettled, self._unsettled = self._unsettled, []
        for instant, sent, command in unsettled:
            keys = [(command.app_id, d.device_id) for d in command.devices]
            for key in keys:
                if self._holding.get(key) == instant:
                    del self._holding[key]
            if sent:
                self._covered.setdefault(instant, set()).update(keys)
        for expiration in [e for e in self._covered if e < now - FORGET_AFTER_MS]:
            del self._covered[expiration]

    def covers(self, row: DueExpiration) -> bool:
        """Whether a command sent ahead carried `row` (then it is not sent again); once."""
        covered = self._covered.get(row.expiration)
        if covered is None or (row.app_id, row.device_id) not in covered:
            return False
        covered.discard((row.app_id, row.device_id))
        return True

    async def run(self) -> None:
        """Hands the held commands to the processor, in the order they were made. A failed
        pass is logged and counted, and its commands are simply decided at their instant."""
        while True:
            commands = await self._queue.get()
            if self._prepare is None:
                continue
            try:
                kept = await self._prepare(commands)
            except Exception:
                log.exception("deciding %d expiry commands ahead failed", len(commands))
                if self._metrics is not None:
                    self._metrics.inc("devreg_expiry_prepared_total", result="failed")
                continue
            log.debug("decided %d of %d expiry commands ahead", kept, len(commands))
