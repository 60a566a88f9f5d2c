"""Composition: builds one devreg worker from Settings and runs it until asked to stop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from projections.store import ProjectionStore
from services import gc_tuning, shutdown, token_lifecycle
from services.config import Settings
from services.http.front import Stream, start_front
from services.kafka import clients
from services.kafka.clients import Ends, KafkaAccess
from services.kafka.faust_app import PartitionReader, build_app
from services.kafka.health import BrokerHealth
from services.keys.store import KeyStore
from services.log import store_check
from services.log.recovery import Embedded
from services.log.rollover import Rollover, held_still
from services.log.topics import ensure_topics
from services.metrics import Metrics
from services.stream.catch_up import CatchUp, Takeover
from services.stream.decision_store import DecisionStore
from services.stream.expiry_ahead import Ahead
from services.stream.gate import Gate
from services.stream.hand_off import HandOff
from services.stream.ownership import CoPartitionedAssignor, Ownership
from services.stream.processor import CommandProcessor
from services.stream.projector import Projector
from services.stream.read_back import ReadBack
from services.stream.scheduler import ExpiryScheduler
from services.stream.visibility import Visibility
from services.tokens.index_store import IndexStore

log = logging.getLogger(__name__)


class Worker:
    """One process: command processor, projector, HTTP API, expiry scheduler."""

    def __init__(
        self,
        settings: Settings,
        kafka: KafkaAccess,
        known_ends: Ends | None = None,
        embedded: Embedded | None = None,
    ):
        self.settings = settings
        self.kafka = kafka
        self.embedded = embedded  # `devreg run`'s kept log and broker (services/embedded.py)
        self._known_ends = known_ends  # the log's exact end, when the caller knows it
        self.metrics = Metrics()
        self._ready = False
        self._resources: list[Any] = []
        self.abandoned: list[str] = []  # what did not stop in time (see `stop`)
        self.failure: asyncio.Future[BaseException] | None = None

    def _fail(self, exc: BaseException) -> None:
        log.critical("stopping the worker: a handler failed: %r", exc, exc_info=exc)
        self.metrics.inc("devreg_handler_failures_total")
        if self.failure is not None and not self.failure.done():
            self.failure.set_result(exc)

    def _broker_reachable(self) -> bool:
        return self.health.reachable

    def _is_ready(self) -> bool:
        owned = self.ownership.owned()
        caught_up = self.catch_up.reached(owned)
        return self._ready and self.health.reachable and caught_up and bool(owned)

    def _task_ended(self, task: asyncio.Future[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._fail(task.exception())  # type: ignore[arg-type]

    def _positions(self) -> Mapping[tuple[str, int], int]:
        return {
            **self.decisions.next_offsets,
            **self.projection.next_offsets(),
            **self.index.next_offsets,
        }

    def _processor_busy(self) -> bool:
        return self.processor.in_flight

    async def _burst_begins(self) -> None:
        """The scheduler is about to send an instant's expiries decided ahead: the processor
        holds its commits until they are out, and the readers of the worker's own records
        pause, so none of the burst is read back from the log (commit_hold.py)."""
        if self.processor.hold_commits():
            every = range(self.settings.partitions)
            backs = (self.read_back, self.tokens_read_back, self.hand_off.read_back)
            await asyncio.gather(*(back.hold_off(every) for back in backs))

    def _projected_to(self, partition: int) -> int:
        return int(self.projection.next_offsets().get((self.settings.events_topic, partition), 0))

    def _indexed_to(self, partition: int) -> int:
        return int(self.index.next_offsets.get((self.settings.tokens_topic, partition), 0))

    async def _assigned(self, assigned: set[tuple[str, int]]) -> Mapping[tuple[str, int], int]:
        """After a rebalance: partitions just handed to this worker are gated until caught up
        with the log's end as it stands now; returns the stores' positions once the batches
        in flight are committed (where to resume)."""
        await self.processor.drain()
        s = self.settings
        self.hand_off.assigned(p for t, p in assigned if t == s.commands_topic)
        self.read_back.reassigned()
        self.tokens_read_back.reassigned()
        topic = s.events_topic
        # Usually known already: the assignor told the gate when the group's table changed.
        self.takeover.assigned(p for t, p in assigned if t == topic)
        handed = self.takeover.waiting()
        await self.keyring.handed(handed)
        if handed:
            try:
                ends = await asyncio.wait_for(
                    clients.log_ends(self.kafka, {topic: self.ownership.partitions}), 10
                )
            except Exception as exc:  # the seek must go on: serve ungated, as before the gate
                log.warning("partitions %s served ungated: no end offsets: %r", handed, exc)
                self.takeover.ungated(handed)
            else:
                self.takeover.handed({p: ends[(topic, p)] for p in handed})
        return self._positions()

    async def start(self) -> None:
        started = time.monotonic()
        self.failure = asyncio.get_running_loop().create_future()
        s = self.settings
        counts = await ensure_topics(s, self.kafka)
        self.ownership = Ownership(s.advertised_url, counts[s.commands_topic])
        stream_topics = {t: counts[t] for t in (s.commands_topic, s.events_topic)}
        ends = self._known_ends or await clients.log_ends(self.kafka, stream_topics)
        streams = {k: v for k, v in ends.items() if k[0] in stream_topics}
        # The keyring is built below: asked for its partitions' keys only once it exists.
        self.catch_up = CatchUp(streams, self._positions, lambda p: self.keyring.read(p))
        self.takeover = Takeover(s.events_topic, self._positions)
        self.ownership.on_update = self.takeover.assigned
        kept = self.embedded is not None  # the stores were checked against the kept log
        self.decisions, self.projection, self.index = await asyncio.gather(
            store_check.open_checked(s.decisions_path, DecisionStore.open, self.kafka, kept),
            store_check.open_checked(s.projection_path, ProjectionStore.open, self.kafka, kept),
            store_check.open_checked(s.index_path, IndexStore.open, self.kafka, kept),
        )
        self._resources += [self.decisions, self.projection, self.index]
        # Not checked against the broker: a handed partition's keys are read from the topic.
        self.keys = await KeyStore.open(s.keys_path)
        self._resources.append(self.keys)
        self.producer, self.command_producer = clients.worker_producers(self.kafka)
        for producer in (self.producer, self.command_producer):
            await producer.start()
            self._resources.append(producer)
        # The writers' gates and the kept log of the embedded mode (services/log/rollover.py).
        self.gate, keyring_gate = Gate(), Gate()
        keep = self.embedded.journal.keep if self.embedded else None
        tokens = token_lifecycle.build(
            s,
            self.kafka,
            self.keys,
            self.index,
            self.decisions,
            self.command_producer,
            self.ownership,
            self.metrics,
            (self.gate, keyring_gate),
            keep,
        )
        self.keyring = tokens.keyring
        visibility = Visibility(s.events_topic, await self.projection.positions())
        self.scheduler = ExpiryScheduler(
            self.projection,
            self.command_producer,
            s.commands_topic,
            self.metrics,
            self.ownership.partition_of,
            partitions=self.ownership.local,
            acknowledged=lambda weighed: self.hand_off.offer_weighed(weighed),
            decided=lambda partition: self.processor.next_offset(partition),
            gate=self.gate,
            ahead=Ahead(
                s.expiry_lead_ms,
                s.expiry_prepared_max,
                lambda commands: self.processor.prepare(commands),
                self.metrics,
            ),
            decisions=visibility,
            bursting=self._burst_begins,
        )
        events_reader, tokens_reader = (
            PartitionReader(s.events_topic),
            PartitionReader(s.tokens_topic),
        )
        recheck_s = s.read_back_recheck_ms / 1000
        busy = self._processor_busy  # (the processor is built below)
        self.read_back = ReadBack(
            events_reader, self._projected_to, self.metrics, recheck_s, in_flight=busy
        )
        self.tokens_read_back = ReadBack(
            tokens_reader, self._indexed_to, self.metrics, recheck_s, "tokens", busy
        )
        tokens.relay.read_back = self.tokens_read_back
        projector = Projector(
            self.projection, visibility, self.metrics, self.scheduler.changed, self.read_back
        )
        self.processor = CommandProcessor(
            s,
            self.decisions,
            self.producer,
            visibility,
            self.metrics,
            self.ownership.partition_of,
            self._fail,
            projector.handle_own,
            tokens.sealing,
            tokens.claims,
            keep,
            self.gate,
            tokens.relay.handle_own,
        )
        self._resources.append(self.processor)  # closed (drained) after faust stops
        commands_reader = PartitionReader(s.commands_topic)
        self.hand_off = HandOff.of(self.processor, commands_reader, self.metrics, s)
        self.faust = build_app(
            s,
            self.kafka,
            self.hand_off.from_log,
            projector.handle,
            tokens.relay.handle,
            self._assigned,
            self._fail,
            CoPartitionedAssignor(self.ownership),
            self.hand_off.revoked,
        )
        events_reader.app = commands_reader.app = tokens_reader.app = self.faust
        await self.faust.start()
        self._resources.append(self.faust)
        self.health = BrokerHealth(self.producer)
        loops = [self.scheduler.run(), self.health.run(), self.read_back.run()]
        loops.append(self.tokens_read_back.run())
        loops += [tokens.retention.run(), self.hand_off.read_back.run(), self.hand_off.run()]
        if self.embedded is not None:
            journal, others = self.embedded.journal, self.embedded.public.held
            still = partial(
                held_still, self.gate, self.processor.drain, keyring_gate, self.faust, others
            )
            rollover = Rollover(s, self.kafka, journal, still, self._positions, self.metrics)
            loops.append(rollover.run())
        for loop in loops:
            task = asyncio.ensure_future(loop)
            task.add_done_callback(self._task_ended)
            self._resources.append(task)
        stream = Stream(
            self.ownership,
            self.takeover.caught_up,
            self.projection,
            visibility,
            self.command_producer,
            self.hand_off.offer,
            self.gate,
            self.keyring,
            tokens,
        )
        await start_front(
            s,
            self.kafka,
            stream,
            self.metrics,
            self._is_ready,
            self._broker_reachable,
            self._resources,
        )
        gc_tuning.tune(s.gc_threshold)
        self._ready = True
        log.info(
            "devreg worker ready in %.2fs on http://%s:%d",
            time.monotonic() - started,
            s.http_host,
            s.http_port,
        )

    async def stop(self) -> None:
        """Stop what started, the last started first, within DEVREG_STOP_TIMEOUT_MS
        (services/shutdown.py): what does not stop in time is abandoned and named, the stores
        close last and always."""
        self._ready = False
        budget_s = self.settings.stop_timeout_ms / 1000
        self.abandoned += await shutdown.stop_all(self._resources[::-1], budget_s)
        self._resources.clear()

    async def run(
        self, stop: asyncio.Event, on_ready: Callable[[], None] | None = None
    ) -> BaseException | None:
        """Serve until `stop` is set or a handler fails; return the failure, if any."""
        try:
            await self.start()
        except BaseException:
            # What did start (faust's agents, the producers, the stores) must stop too, or
            # the process would wait on their tasks forever instead of exiting.
            await self.stop()
            raise
        if on_ready is not None:
            on_ready()
        assert self.failure is not None
        stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        waits: set[asyncio.Future[Any]] = {self.failure, stopping}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            await self.stop()
        return self.failure.result() if self.failure.done() else None
