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
from projections.queries import Partitions
from projections.store import DueExpiration, ExpiryCursor, ProjectionStore
from services.metrics import Metrics

log = logging.getLogger(__name__)
_START: ExpiryCursor = (-(2**63), "", "")
RESEND_AFTER_S = 5.0  # a sent expiry not applied by then is sent again (same id: one effect)
RECHECK_S = 1.0  # while sent expiries are in flight, look again this often


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def expiry_command(due: DueExpiration, now_ms: int) -> ExpireRegistration:
    return ExpireRegistration(
        # The idempotency key is per app: the device must be part of it.
        command_id=f"expire/{due.expiration}/v{due.version}/{due.device_id}",
        app_id=due.app_id,
        device_id=due.device_id,
        issued_at=now_ms,
        expiration=due.expiration,
    )


class ExpiryScheduler:
    def __init__(
        self,
        projection: ProjectionStore,
        producer: AIOKafkaProducer,
        commands_topic: str,
        metrics: Metrics,
        batch_size: int = 1000,
        clock: Callable[[], int] = wall_clock_ms,
        partitions: Callable[[], Partitions] = lambda: None,
    ):
        self._partitions = partitions  # with several workers, only this one's partitions
        self._projection = projection
        self._producer = producer
        self._topic = commands_topic
        self._metrics = metrics
        self._batch = batch_size
        self._clock = clock
        self._wake = asyncio.Event()
        self._target: int | None = None  # the expiration it sleeps until
        self._sent: dict[tuple[str, str, str], float] = {}  # (app, device, command id) -> when

    def changed(self, earliest_expiration: int | None) -> None:
        """The projector wrote expirations (or removed some): wake if it is earlier news."""
        if self._sent or (
            earliest_expiration is not None
            and (self._target is None or earliest_expiration < self._target)
        ):
            self._wake.set()

    async def run(self) -> None:
        while True:
            in_flight = await self._expire_due()
            now = self._clock()
            nxt = await self._projection.next_expiration(now)
            self._target = nxt
            delay = None if nxt is None else max(nxt - now, 0) / 1000
            if in_flight:
                delay = RECHECK_S if delay is None else min(delay, RECHECK_S)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):  # the timeout is the alarm clock
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _expire_due(self) -> bool:
        """Send every due expiry not sent recently; True if some are still in flight."""
        cursor, in_flight, now_s = _START, False, time.monotonic()
        self._sent = {k: t for k, t in self._sent.items() if now_s - t < RESEND_AFTER_S}
        while True:
            now = self._clock()
            due = await self._projection.due_expirations(
                now, cursor, self._batch, self._partitions()
            )
            if not due:
                return in_flight
            cursor = (due[-1].expiration, due[-1].app_id, due[-1].device_id)
            fresh = []
            for item in due:
                command = expiry_command(item, now)
                key = (command.app_id, command.device_id, command.command_id)
                in_flight = True
                if key not in self._sent:
                    self._sent[key] = now_s
                    fresh.append(command)
            await self._send(fresh)
            await asyncio.sleep(0)  # a burst goes out in batches: let HTTP requests in between

    async def _send(self, commands: list[ExpireRegistration]) -> None:
        if not commands:
            return
        futures = [
            await self._producer.send(
                self._topic, encode(c), key=partition_key(c.app_id, c.device_id)
            )
            for c in commands
        ]
        await asyncio.gather(*futures)
        for command in commands:
            assert command.issued_at is not None
            lag = command.issued_at - command.expiration
            self._metrics.inc("devreg_expiry_commands_total")
            self._metrics.observe("devreg_expiry_send_lag_ms", lag)
        log.info("sent %d expiry commands", len(commands))
