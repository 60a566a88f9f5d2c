"""The expiry scheduler: sleeps until the earliest pending expiration, then asks the command
processor (the only writer of device events) to expire what is due.

It keeps no state of its own: the projection's expiration index is its state, so after a
restart whatever fell due meanwhile is found at once. What is due goes out as one
`ExpireRegistrations` per commands partition and app (up to COMMAND_DEVICES devices each), so a
burst costs the processor one command per few hundred devices, not one per device. Command ids
are derived from what they carry, so the same rows sent twice (a restart, a slow projection)
have one effect: the processor answers the repeat with the first outcome; a re-sent command
with other devices decides each device on its own state, and one expired already is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaProducer

from events import ExpireRegistrations, encode
from events.identity import partition_key
from projections.positions import Record
from projections.queries import Partitions
from projections.store import ExpiryCursor, ProjectionStore
from services.clock import now_ms
from services.metrics import Metrics
from services.stream.expiry_ahead import Ahead
from services.stream.expiry_commands import expiry_commands
from services.stream.gate import Gate
from services.stream.record_batches import RecordBatches
from services.stream.visibility import Visibility

log = logging.getLogger(__name__)
_START: ExpiryCursor = (-(2**63), "", "")
# A sent expiry still due this long after every command sent was decided is sent again (a
# safety net: one effect whatever is sent). Not while the processor still works through them:
# a backlog draining is not a lost command, and resending it only added to the backlog.
RESEND_AFTER_S = 60.0
RECHECK_S = 1.0  # while sent expiries are in flight, look again this often
# Due rows per query: what one pass holds the event loop for (the longest an HTTP request waits
# behind a burst), against how soon a large burst is asked for (docs/benchmarks.md, "Figures
# behind the code").
BATCH = 2000
# After sending what was decided ahead, how long (at most) to let the processor use it before
# reading the rows due (a row registered after the look ahead waits as long).
DECIDED_WAIT_S = 1.0
Weighed = list[tuple[Record, int]]  # acknowledged commands, each with its number of devices


async def _nothing() -> None:
    pass


class ExpiryScheduler:
    def __init__(
        self,
        projection: ProjectionStore,
        producer: AIOKafkaProducer,
        commands_topic: str,
        metrics: Metrics,
        partition_of: Callable[[str, str], int],
        batch_size: int = BATCH,
        clock: Callable[[], int] = now_ms,
        partitions: Callable[[], Partitions] = lambda: None,
        acknowledged: Callable[[Weighed], None] = lambda records: None,
        decided: Callable[[int], int] = lambda partition: 2**63,
        monotonic: Callable[[], float] = time.monotonic,
        gate: Gate | None = None,
        ahead: Ahead | None = None,
        decisions: Visibility | None = None,
        bursting: Callable[[], Awaitable[None]] = _nothing,
    ):
        # Told before the commands decided ahead are sent (the processor holds its commits
        # and the worker's readers stop reading what it is about to write: commit_hold.py).
        self._bursting = bursting
        # Where the outcomes of the commands decided ahead are awaited.
        self._decisions = decisions or Visibility("")
        self._gate = gate or Gate()  # closed while the embedded broker is renewed
        # Expiries handed to the processor to decide ahead of their instant, sent at it.
        self._ahead = ahead or Ahead(0, 0, None)
        # The commands partition of a device's key (the producers' murmur2 partitioner).
        self._partition_of = partition_of
        self._partitions = partitions  # with several workers, only this one's partitions
        # Told each batch's records as the log holds them (with their number of devices), as
        # soon as Kafka acknowledges them: the hand-off (services/stream/hand_off.py) decides
        # them from there, in order with the HTTP commands it is handed on the same partitions.
        self._acknowledged = acknowledged
        # The processor's next commands offset to decide on a partition: what was sent below
        # it has been decided.
        self._decided = decided
        self._monotonic = monotonic
        self._projection = projection
        self._producer = producer
        self._topic = commands_topic
        self._metrics = metrics
        self._batch = batch_size
        self._clock = clock
        self._wake = asyncio.Event()
        self._target: int | None = None  # the time it sleeps until (an expiration, or ahead)
        # Due rows up to the cursor were sent, and acknowledged by Kafka before the burst's
        # loop returns: they are in the log and will be decided. They are not sent again while
        # in flight, so a backlog never multiplies itself with repeats.
        self._cursor: ExpiryCursor = _START
        self._cursor_since = monotonic()
        # Per commands partition, one past the last command sent since the cursor left the
        # start: until the processor has decided that far, what was sent is still on its way.
        self._sent_to: dict[int, int] = {}

    def changed(self, earliest_expiration: int | None) -> None:
        """The projector wrote expirations: wake if one is earlier than the alarm (or, with
        expiries decided ahead, comes within the lead before it)."""
        if earliest_expiration is None:
            return
        self._ahead.noticed(earliest_expiration)
        if self._target is None or earliest_expiration - self._ahead.lead_ms < self._target:
            self._wake.set()

    async def run(self) -> None:
        preparing = asyncio.ensure_future(self._ahead.run())
        try:
            await self._run()
        finally:
            preparing.cancel()

    async def _run(self) -> None:
        while True:
            # Cleared before looking: a change that lands while it looks wakes the next wait.
            self._wake.clear()
            looked_at = await self.expire_due()
            # After the instant the due query used, not a fresh clock: an expiration falling
            # between two clock readings would be neither due nor next, and never expired.
            nxt = await self._projection.next_expiration(looked_at)
            ahead = await self._prepare_ahead(looked_at)
            self._target = nxt if ahead is None or (nxt is not None and nxt < ahead) else ahead
            now = self._clock()
            delay = None if self._target is None else max(self._target - now, 0) / 1000
            if self._cursor != _START:  # expiries in flight: see them land, then rewind
                delay = RECHECK_S if delay is None else min(delay, RECHECK_S)
            with contextlib.suppress(TimeoutError):  # the timeout is the alarm clock
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _rewind_if_landed(self, now: int) -> None:
        """Back to the start once nothing sent is still due, or (a safety net, one effect
        whatever is sent again) when something sent has stayed due for RESEND_AFTER_S after
        the processor decided every command sent."""
        if self._cursor == _START:
            return
        partitions = self._partitions()
        head = await self._projection.due_expirations(now, _START, 1, partitions)
        behind = bool(head) and (head[0].expiration, head[0].app_id, head[0].device_id) <= (
            self._cursor
        )
        if behind and self._deciding(partitions):
            self._cursor_since = self._monotonic()  # a backlog draining: nothing is lost
        elif not behind or self._monotonic() - self._cursor_since > RESEND_AFTER_S:
            self._cursor = _START
            self._sent_to.clear()

    def _deciding(self, partitions: Partitions) -> bool:
        """Whether the processor has yet to decide a command sent on one of `partitions`."""
        return any(
            self._decided(p) < end
            for p, end in self._sent_to.items()
            if partitions is None or p in partitions
        )

    async def expire_due(self) -> int:
        """Send every due expiry after the cursor, in bounded batches, advancing the cursor;
        return the time the last query was due at (every expiration up to it was sent).

        Batches go out back to back; their acknowledgements are awaited once the burst is out
        (a failed one raises, the worker stops, and a restart sends again from the start)."""
        async with self._gate.passage():
            return await self._expire_due_now()

    async def _expire_due_now(self) -> int:
        await self._rewind_if_landed(self._clock())
        sent: list[tuple[list[ExpireRegistrations], asyncio.Future[list[Record]]]] = []
        now = self._clock()
        ready = self._ahead.due(now, self._partitions())
        if ready:  # decided ahead: sent as they are, and decided before the rows are read
            await self._send_ahead(ready, now)
        self._ahead.settle(now)
        while True:
            now = self._clock()
            due = await self._projection.due_expirations(
                now, self._cursor, self._batch, self._partitions()
            )
            if not due:
                break
            rows = [row for row in due if not self._ahead.covers(row)]
            if rows:
                commands = expiry_commands(rows, now, self._partition_of)
                sent.append((commands, await self._send(commands)))
            if self._cursor == _START:
                self._cursor_since = self._monotonic()
            self._cursor = (due[-1].expiration, due[-1].app_id, due[-1].device_id)
            await asyncio.sleep(0)  # a burst goes out in batches: let HTTP requests in between
        for commands, acknowledged_now in sent:
            await acknowledged_now
            self._count(commands, commands[0].issued_at or now)
        return now

    async def _send_ahead(self, ready: list[tuple[ExpireRegistrations, bytes]], now: int) -> None:
        """Send the commands decided ahead, and wait (at most DECIDED_WAIT_S) for their
        outcomes: they are a burst's costliest moment, and reading the due rows (which they
        mostly carry, and remove) meanwhile would only compete with them. Whatever else is
        done per device waits until then."""
        commands = [c for c, _ in ready]
        outcomes = [self._decisions.expect(c.app_id, c.command_id) for c in commands]
        try:
            await self._bursting()
            await (await self._send(commands, [encoded for _, encoded in ready]))
            await asyncio.wait(outcomes, timeout=DECIDED_WAIT_S)
            self._count(commands, now)
        finally:
            for c in commands:
                self._decisions.forget(c.app_id, c.command_id)

    async def _prepare_ahead(self, now: int) -> int | None:
        """Make what falls due within the lead, and is not held yet, into commands for the
        processor to decide ahead (services/stream/expiry_ahead.py); returns when to look
        ahead again."""
        ahead = self._ahead
        if not ahead.on:
            return None
        horizon = now + ahead.lead_ms
        after = ahead.start(now)
        while ahead.room():
            due = await self._projection.due_expirations(
                horizon, after, self._batch, self._partitions()
            )
            if not due:
                break
            after = (due[-1].expiration, due[-1].app_id, due[-1].device_id)
            rows = [row for row in due if not ahead.holds(row)]
            commands = expiry_commands(rows, None, self._partition_of)
            ahead.hold(
                [(self._partition_of(c.app_id, c.devices[0].device_id), c) for c in commands]
            )
            ahead.cursor = max(ahead.cursor, after)
            await asyncio.sleep(0)  # as for what is due: requests get in between
        times = [ahead.rescan_at()]
        if ahead.room():  # else: looked at again once the held commands are sent
            nxt = await self._projection.next_expiration(horizon)
            times.append(None if nxt is None else nxt - ahead.lead_ms)
        return min((t for t in times if t is not None), default=None)

    async def _send(
        self, commands: list[ExpireRegistrations], encoded: list[bytes] | None = None
    ) -> asyncio.Future[list[Record]]:
        """As record batches per partition, each under its first device's key (all of its
        devices are of that key's partition), encoded unless `encoded` has them; returns
        their acknowledgement (handed over as soon as it arrives)."""
        batches = RecordBatches(self._producer, keep=True)
        values = encoded or [encode(c) for c in commands]
        for c, value in zip(commands, values, strict=True):
            first = c.devices[0].device_id
            partition = self._partition_of(c.app_id, first)
            await batches.add(self._topic, partition, partition_key(c.app_id, first), value)
        await batches.flush()
        acknowledged = asyncio.ensure_future(batches.acknowledged_records())
        weights = [len(c.devices) for c in commands]
        acknowledged.add_done_callback(lambda done: self._hand_over(done, weights))
        return acknowledged

    def _hand_over(self, acknowledged: asyncio.Future[list[Record]], weights: list[int]) -> None:
        if not acknowledged.cancelled() and acknowledged.exception() is None:
            records = acknowledged.result()
            for r in records:
                self._sent_to[r.partition] = max(self._sent_to.get(r.partition, 0), r.offset + 1)
            self._acknowledged(list(zip(records, weights, strict=True)))

    def _count(self, commands: list[ExpireRegistrations], sent_at: int) -> None:
        devices = 0
        for command in commands:
            for due in command.devices:
                lag = sent_at - due.expiration
                self._metrics.observe("devreg_expiry_send_lag_seconds", lag / 1000)
            devices += len(command.devices)
        self._metrics.inc("devreg_expiry_commands_total", len(commands))
        self._metrics.inc("devreg_expiry_devices_total", devices)
        log.info("sent %d expiry commands for %d devices", len(commands), devices)
