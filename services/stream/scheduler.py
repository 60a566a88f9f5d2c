"""The expiry scheduler: sleeps until the earliest pending expiration, then asks the command
processor (the only writer of device events) to expire what is due.

It keeps no state of its own: the projection's expiration index is its state, so after a
restart whatever fell due meanwhile is found at once. Expiry commands have deterministic ids
(device, expiration, device version), so sending one twice (a restart, a slow projection) has
one effect: the command processor answers the repeat with the first outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaProducer

from events import ExpireRegistration, encode
from events.identity import partition_key
from projections.positions import Record
from projections.queries import Partitions
from projections.store import DueExpiration, ExpiryCursor, ProjectionStore
from services.clock import now_ms
from services.metrics import Metrics
from services.stream.gate import Gate
from services.stream.record_batches import RecordBatches

log = logging.getLogger(__name__)
_START: ExpiryCursor = (-(2**63), "", "")
RESEND_AFTER_S = 60.0  # a sent expiry still due after this is sent again (same id: one effect)
RECHECK_S = 1.0  # while sent expiries are in flight, look again this often
# Due rows per query: building and handing over 2000 commands holds the event loop ~11 ms, the
# longest an HTTP request waits behind a burst. 100k due at once, one worker: asked within
# p99 572 ms (1000 per query, acknowledged batch by batch: 1.0-1.6 s; docs/benchmarks.md).
BATCH = 2000


def expiry_command(due: DueExpiration, issued_at: int) -> ExpireRegistration:
    return ExpireRegistration(
        # The idempotency key is per app: the device must be part of it.
        command_id=f"expire/{due.expiration}/v{due.version}/{due.device_id}",
        app_id=due.app_id,
        device_id=due.device_id,
        issued_at=issued_at,
        expiration=due.expiration,
    )


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
        acknowledged: Callable[[list[Record]], None] = lambda records: None,
        gate: Gate | None = None,
    ):
        self._gate = gate or Gate()  # closed while the embedded broker is renewed
        # The commands partition of a device's key (the producers' murmur2 partitioner).
        self._partition_of = partition_of
        self._partitions = partitions  # with several workers, only this one's partitions
        # Told each batch's records as the log holds them, as soon as Kafka acknowledges
        # them: the hand-off (services/stream/hand_off.py) decides them from there, in order
        # with the HTTP commands it is handed on the same partitions.
        self._acknowledged = acknowledged
        self._projection = projection
        self._producer = producer
        self._topic = commands_topic
        self._metrics = metrics
        self._batch = batch_size
        self._clock = clock
        self._wake = asyncio.Event()
        self._target: int | None = None  # the expiration it sleeps until
        # Due rows up to the cursor were sent, and acknowledged by Kafka before the burst's
        # loop returns: they are in the log and will be decided. They are not sent again while
        # in flight, so a backlog never multiplies itself with repeats.
        self._cursor: ExpiryCursor = _START
        self._cursor_since = time.monotonic()

    def changed(self, earliest_expiration: int | None) -> None:
        """The projector wrote expirations: wake if one is earlier than the alarm."""
        if earliest_expiration is not None and (
            self._target is None or earliest_expiration < self._target
        ):
            self._wake.set()

    async def run(self) -> None:
        while True:
            # Cleared before looking: a change that lands while it looks wakes the next wait.
            self._wake.clear()
            looked_at = await self._expire_due()
            # After the instant the due query used, not a fresh clock: an expiration falling
            # between two clock readings would be neither due nor next, and never expired.
            nxt = await self._projection.next_expiration(looked_at)
            self._target = nxt
            now = self._clock()
            delay = None if nxt is None else max(nxt - now, 0) / 1000
            if self._cursor != _START:  # expiries in flight: see them land, then rewind
                delay = RECHECK_S if delay is None else min(delay, RECHECK_S)
            with contextlib.suppress(TimeoutError):  # the timeout is the alarm clock
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _rewind_if_landed(self, now: int) -> None:
        """Back to the start once nothing sent is still due, or (a safety net, same command
        ids, so one effect) when something sent has stayed due for RESEND_AFTER_S."""
        if self._cursor == _START:
            return
        head = await self._projection.due_expirations(now, _START, 1, self._partitions())
        behind = bool(head) and (head[0].expiration, head[0].app_id, head[0].device_id) <= (
            self._cursor
        )
        if not behind or time.monotonic() - self._cursor_since > RESEND_AFTER_S:
            self._cursor = _START

    async def _expire_due(self) -> int:
        """Send every due expiry after the cursor, in bounded batches, advancing the cursor;
        return the time the last query was due at (every expiration up to it was sent).

        Batches go out back to back; their acknowledgements are awaited once the burst is out
        (a failed one raises, the worker stops, and a restart sends again from the start)."""
        async with self._gate.passage():
            return await self._expire_due_now()

    async def _expire_due_now(self) -> int:
        await self._rewind_if_landed(self._clock())
        sent: list[tuple[list[ExpireRegistration], asyncio.Future[list[Record]]]] = []
        while True:
            now = self._clock()
            due = await self._projection.due_expirations(
                now, self._cursor, self._batch, self._partitions()
            )
            if not due:
                break
            # A device with several due channels shows up once per channel: one command each.
            unique = {c.command_id: c for c in (expiry_command(item, now) for item in due)}
            commands = list(unique.values())
            sent.append((commands, await self._send(commands)))
            if self._cursor == _START:
                self._cursor_since = time.monotonic()
            self._cursor = (due[-1].expiration, due[-1].app_id, due[-1].device_id)
            await asyncio.sleep(0)  # a burst goes out in batches: let HTTP requests in between
        for commands, acknowledged in sent:
            await acknowledged
            self._count(commands)
        return now

    async def _send(self, commands: list[ExpireRegistration]) -> asyncio.Future[list[Record]]:
        """As record batches per partition, each to the partition of its device's key;
        returns their acknowledgement (handed over as soon as it arrives)."""
        batches = RecordBatches(self._producer, keep=True)
        for c in commands:
            partition = self._partition_of(c.app_id, c.device_id)
            await batches.add(
                self._topic, partition, partition_key(c.app_id, c.device_id), encode(c)
            )
        await batches.flush()
        acknowledged = asyncio.ensure_future(batches.acknowledged_records())
        acknowledged.add_done_callback(self._hand_over)
        return acknowledged

    def _hand_over(self, acknowledged: asyncio.Future[list[Record]]) -> None:
        if not acknowledged.cancelled() and acknowledged.exception() is None:
            self._acknowledged(acknowledged.result())

    def _count(self, commands: list[ExpireRegistration]) -> None:
        for command in commands:
            assert command.issued_at is not None
            lag = command.issued_at - command.expiration
            self._metrics.inc("devreg_expiry_commands_total")
            self._metrics.observe("devreg_expiry_send_lag_seconds", lag / 1000)
        log.info("sent %d expiry commands", len(commands))
