"""faust wiring, kept thin: three agents that hand record batches to plain async functions
(commands to the processor, events to the projector, the tokens topic to the token index).

faust runs the consumer group, the agents and their batching; the handlers own all logic and
are testable without faust. Positions live in SQLite, not in Kafka's committed offsets: after
every rebalance each assigned partition is moved to the position its store recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from time import monotonic
from typing import Any, cast

import faust
from aiokafka import TopicPartition
from faust.sensors.monitor import Monitor

from projections.positions import Record
from services.config import Settings
from services.kafka import faust_delivery
from services.kafka.clients import KafkaAccess
from services.stream.ownership import CoPartitionedAssignor

log = logging.getLogger(__name__)
Handler = Callable[[Sequence[Record]], Awaitable[None]]
# Given the (topic, partition)s just assigned: the stores' positions to resume them from.
Positions = Callable[[set[tuple[str, int]]], Awaitable[Mapping[tuple[str, int], int]]]
OnFailure = Callable[[BaseException], None]
AgentFun = Callable[[Any], Awaitable[None]]
# Told when a rebalance takes this worker's partitions away, before it rejoins the group.
Revoked = Callable[[], Awaitable[None]]


def _record(event: Any) -> Record:
    message = event.message
    return Record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp=round(message.timestamp * 1000),
        key=message.key,
        value=message.value,
        headers=_headers(message.headers),
    )


def _headers(raw: Any) -> tuple[tuple[str, bytes | None], ...]:
    # aiokafka hands faust a list of (name, value) pairs; faust's own type allows a mapping.
    pairs = raw.items() if isinstance(raw, Mapping) else (raw or ())
    return tuple((str(name), value) for name, value in pairs)


def _agent(settings: Settings, handler: Handler, on_failure: OnFailure) -> AgentFun:
    async def agent(stream: Any) -> None:
        # How long a batch may wait for company (DEVREG_BATCH_WINDOW_MS): what an agent reads
        # is commands published straight to Kafka, other workers' events and token claims,
        # never the worker's own HTTP writes (services/stream/hand_off.py), so the window
        # costs their freshness little and saves per-batch costs (docs/benchmarks.md).
        window = settings.batch_window_ms / 1000
        async for batch in stream.take_events(settings.batch_size, within=window):
            try:
                await handler([_record(event) for event in batch])
            except Exception as exc:
                # faust would restart the agent past this batch; the worker must stop instead,
                # so a restart resumes from the stores' positions and nothing is skipped.
                on_failure(exc)
                raise

    return agent


def _tune_consumer(app: faust.App, wait_ms: int, assignor: CoPartitionedAssignor) -> None:
    """Two settings faust-streaming 0.15 does not expose, set on the aiokafka consumer it
    creates, before it starts:
    - the fetch wait, hard-coded to 1500 ms, which Tansu honours even when data is waiting
      (docs/design.md §10): freshness would be ~1.5 s;
    - the partition assignor: faust's round robin may split partition p of the commands and
      events topics between workers; devreg needs them together (docs/design.md §2)."""
    consumer: Any = app.consumer
    thread = consumer._thread
    create = thread._create_worker_consumer

    def create_tuned(transport: Any) -> Any:
        client = create(transport)
        client._fetch_max_wait_ms = wait_ms
        client._partition_assignment_strategy = (assignor,)
        return client

    thread._create_worker_consumer = create_tuned


def _resume_from_stores(app: faust.App, positions: Positions) -> None:
    """After faust seeks to Kafka's committed offsets, seek again to the stores' positions."""
    consumer: Any = app.consumer
    original = consumer.perform_seek

    async def perform_seek() -> None:
        await original()
        assigned = consumer.assignment()
        stored = await positions({(tp.topic, tp.partition) for tp in assigned})
        for tp in assigned:
            offset = stored.get((tp.topic, tp.partition), 0)
            await consumer.seek(tp, offset)
            log.info("resuming %s[%d] at offset %d", tp.topic, tp.partition, offset)

    consumer.perform_seek = perform_seek


class PartitionReader:
    """One topic's partitions in faust's consumer, for services/stream/read_back.py: the
    events (the worker's own, folded by write-through) and the commands (the worker's own,
    handed to the processor at Kafka's acknowledgement: services/stream/hand_off.py).

    Paused in the aiokafka consumer faust runs (on its thread), not with faust's own
    pause_partitions: faust's only stops handing records over, while aiokafka goes on fetching
    the partition and holds what it fetched; and aiokafka sends no fetch to a broker while a
    partition's records wait there, for up to 100 ms (its prefetch backoff). Every pause then
    stalled the commands too: freshness p99 at 100/s went from 17 to 108 ms. aiokafka's pause
    stops the fetches, and the records it already holds are dropped at the next poll. A resume
    seeks first. Both act on partitions still assigned only (aiokafka raises for others, and a
    late call after a rebalance must not touch a partition this worker no longer owns)."""

    def __init__(self, topic: str):
        self.topic = topic
        self.app: faust.App | None = None  # bound once built (the agents need the reader)

    async def pause(self, partitions: set[int]) -> None:
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]

        async def pause_owned(client: Any) -> None:
            owned = client.assignment()
            client.pause(*[tp for tp in tps if tp in owned])

        await self._in_thread(pause_owned)

    async def resume(self, positions: Mapping[int, int]) -> None:
        tps = [TopicPartition(self.topic, p) for p in sorted(positions)]

        async def resume_owned(client: Any) -> None:
            owned = [tp for tp in tps if tp in client.assignment()]
            for tp in owned:
                client.seek(tp, positions[tp.partition])
            client.resume(*owned)

        await self._in_thread(resume_owned)

    async def _in_thread(self, call: Callable[[Any], Awaitable[None]]) -> None:
        if self.app is not None:
            await _in_consumer_thread(self.app, call)


async def hold_fetching(app: faust.App) -> set[TopicPartition]:
    """Stop the aiokafka consumer faust runs from fetching any partition (EventsReader says
    why there); returns those it stopped, for `resume_fetching`. Records it holds already
    are still delivered."""
    held: set[TopicPartition] = set()

    async def pause_all(client: Any) -> None:
        held.update(set(client.assignment()) - set(client.paused()))
        client.pause(*held)

    await _in_consumer_thread(app, pause_all)
    return held


async def resume_fetching(app: faust.App, held: set[TopicPartition]) -> None:
    """Fetch again, from where each partition was, those still assigned."""

    async def resume_owned(client: Any) -> None:
        client.resume(*[tp for tp in held if tp in client.assignment()])

    await _in_consumer_thread(app, resume_owned)


async def _in_consumer_thread(app: faust.App, call: Callable[[Any], Awaitable[None]]) -> None:
    thread = cast(Any, app.consumer)._thread
    await thread.call_thread(call, thread._ensure_consumer())


def broker_credentials(kafka: KafkaAccess) -> Any:
    """The access's credentials as faust takes them (it hands them to every aiokafka client it
    builds). The TLS context goes inside the SASL credentials: faust ignores its separate
    `ssl_context` setting once credentials are given, which would silently drop TLS."""
    context = kafka.ssl_context()
    if kafka.sasl:
        return faust.SASLCredentials(
            username=kafka.username,
            password=kafka.password,
            mechanism=kafka.sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


class _QuietMonitor(Monitor):
    """faust's monitor keeps per-message statistics nobody reads here (the web UI is off);
    on the hot path that bookkeeping costs CPU on every message."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        # The one statistic kept: faust's livelock check (every ~7 s) reads it, and without it
        # reports every partition behind its high-water mark as idle since start.
        self.stream_inbound_time[tp] = monotonic()
        return None

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None


def devreg_topics(app: faust.App, settings: Settings) -> tuple[Any, Any, Any]:
    """The commands, events and tokens topics, as faust reads them: raw bytes, and no acks.
    Positions live in the stores; and faust's acked offsets of a partition with a gap it did
    not see (records handed over at Kafka's acknowledgement, a renewal's filler) are never
    committed or dropped, a list that every commit sorts, growing with every record
    (docs/benchmarks.md, "The long run's growth: faust's acked offsets")."""
    commands, events, tokens = (
        app.topic(name, key_serializer="raw", value_serializer="raw", acks=False)
        for name in (settings.commands_topic, settings.events_topic, settings.tokens_topic)
    )
    return commands, events, tokens


def build_app(
    settings: Settings,
    kafka: KafkaAccess,
    on_commands: Handler,
    on_events: Handler,
    on_tokens: Handler,
    positions: Positions,
    on_failure: OnFailure,
    assignor: CoPartitionedAssignor,
    revoked: Revoked,
) -> faust.App:
    app = faust.App(
        settings.group_id,
        broker=[f"kafka://{server}" for server in kafka.bootstrap.split(",")],
        broker_credentials=broker_credentials(kafka),
        store="memory://",
        web_enabled=False,
        datadir=str(settings.data_dir / "faust"),
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        consumer_max_fetch_wait_ms=settings.fetch_max_wait_ms,
        broker_session_timeout=settings.session_timeout_ms / 1000,
        broker_heartbeat_interval=settings.heartbeat_interval_ms / 1000,
        broker_rebalance_timeout=settings.rebalance_timeout_ms / 1000,
        producer_acks=-1,
        table_standby_replicas=0,
        monitor=_QuietMonitor(),
    )
    faust_delivery.install(app)  # before app.topic(): topics create the transport
    commands, events, tokens = devreg_topics(app, settings)
    app.agent(commands, name="devreg.command-processor")(_agent(settings, on_commands, on_failure))
    app.agent(events, name="devreg.projector")(_agent(settings, on_events, on_failure))
    app.agent(tokens, name="devreg.token-index")(_agent(settings, on_tokens, on_failure))
    _tune_consumer(app, settings.fetch_max_wait_ms, assignor)
    _resume_from_stores(app, positions)

    async def on_revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
        await revoked()

    # faust awaits this before the consumer rejoins the group: nothing this worker decides
    # after it returns can race the partitions' next owner.
    app.on_partitions_revoked.connect(cast(Any, on_revoked))
    return app
