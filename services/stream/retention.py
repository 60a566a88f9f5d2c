"""Retention: a device gone (unregistered, expired, rejected or superseded) for an app's
retention period is forgotten, by a ForgetDevice command to its own single writer.

Like the expiry scheduler it keeps no state of its own: the decision store's gone_devices
(an index by app and time) is its state, so after a restart whatever fell due meanwhile is
found at once. Commands have deterministic ids (device and version), so one sent twice (a
restart, a forget not decided yet) is decided once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from aiokafka import AIOKafkaProducer

from events import ForgetDevice, encode
from events.identity import partition_key
from services.clock import now_ms
from services.metrics import Metrics
from services.stream.decision_store import DecisionStore, GoneDevice
from services.stream.record_batches import RecordBatches

log = logging.getLogger(__name__)
DAY_MS = 86_400_000
BATCH = 1000
RECHECK_S = 5.0  # the longest it sleeps: a device gone just now is seen within this
RESEND_AFTER_S = 60.0  # a command sent and still not decided after this is sent again


def retention_command(gone: GoneDevice, issued_at: int) -> ForgetDevice:
    return ForgetDevice(
        command_id=f"retention/v{gone.version}/{gone.device_id}",
        app_id=gone.app_id,
        device_id=gone.device_id,
        issued_at=issued_at,
        reason="retention",
    )


class RetentionScheduler:
    def __init__(
        self,
        decisions: DecisionStore,
        producer: AIOKafkaProducer,
        commands_topic: str,
        retention_days: Mapping[str, float],
        metrics: Metrics,
        partition_of: Callable[[str, str], int],
        partitions: Callable[[], frozenset[int] | None],
        clock: Callable[[], int] = now_ms,
    ):
        self._decisions = decisions
        self._producer = producer
        self._topic = commands_topic
        self._periods = {app: round(days * DAY_MS) for app, days in retention_days.items()}
        self._metrics = metrics
        self._partition_of = partition_of
        self._partitions = partitions
        self._clock = clock
        self._sent: dict[str, float] = {}  # command id -> when (monotonic)

    async def run(self) -> None:
        if not self._periods:
            return
        while True:
            await self.forget_due()
            delay = RECHECK_S
            now = self._clock()
            for app_id, period in self._periods.items():
                nxt = await self._decisions.next_gone(app_id, now - period)
                if nxt is not None:
                    delay = min(delay, max(nxt + period - now, 0) / 1000)
            await asyncio.sleep(delay)

    async def forget_due(self) -> int:
        """Send a forget for every device due; returns how many were sent."""
        now, sent = self._clock(), 0
        mono = time.monotonic()
        self._sent = {c: t for c, t in self._sent.items() if mono - t < RESEND_AFTER_S}
        for app_id, period in self._periods.items():
            due = await self._decisions.gone_before(app_id, now - period, BATCH, self._partitions())
            commands = [retention_command(g, now) for g in due]
            fresh = [c for c in commands if c.command_id not in self._sent]
            if fresh:
                await self._send(fresh)
                self._sent.update(dict.fromkeys((c.command_id for c in fresh), mono))
                sent += len(fresh)
        return sent

    async def _send(self, commands: list[ForgetDevice]) -> None:
        batches = RecordBatches(self._producer)
        for c in commands:
            partition = self._partition_of(c.app_id, c.device_id)
            await batches.add(
                self._topic, partition, partition_key(c.app_id, c.device_id), encode(c)
            )
        await batches.flush()
        await batches.acknowledged()
        self._metrics.inc("devreg_retention_commands_total", len(commands))
        log.info("retention: sent %d forget commands", len(commands))
