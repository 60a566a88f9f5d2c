"""Composition of a worker's HTTP side: the forwarder to partition owners, the live tail for
viewers, the command gateway, the API and the server (services/worker.py builds the rest)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from projections.positions import Record
from projections.store import ProjectionStore
from services.config import Settings
from services.http.admission import Admission
from services.http.api import Api
from services.http.command_gateway import CommandGateway
from services.http.forwarding import Forwarder
from services.http.server import serve
from services.kafka.clients import KafkaAccess
from services.keys.keyring import Keyring
from services.metrics import Metrics
from services.stream.gate import Gate
from services.stream.live_tail import LiveTail
from services.stream.ownership import Ownership
from services.stream.visibility import Visibility
from services.token_lifecycle import TokenLifecycle


@dataclass
class Stream:
    """What the HTTP side needs of the worker's stream processing."""

    ownership: Ownership
    caught_up: Callable[[int], bool]  # False while a partition just handed over catches up
    projection: ProjectionStore
    visibility: Visibility
    command_producer: AIOKafkaProducer
    offer: Callable[[Record], None]  # the hand-off's: Kafka acknowledged an own command
    gate: Gate
    keyring: Keyring
    tokens: TokenLifecycle


async def start_front(
    settings: Settings,
    kafka: KafkaAccess,
    stream: Stream,
    metrics: Metrics,
    ready: Callable[[], bool],
    reachable: Callable[[], bool],
    resources: list[Any],
) -> None:
    """Start the HTTP side; each part goes into `resources` as it starts (stopped the last
    started first: the server before the live tail, whose streams its shutdown ends first,
    services/http/live.py)."""
    s = settings
    forwarder = Forwarder(stream.ownership, stream.caught_up)
    resources.append(forwarder)
    live_tail = LiveTail(
        kafka,
        s.events_topic,
        stream.ownership.partitions,
        stream.ownership.local,
        stream.projection.next_offsets,
        metrics,
    )
    resources.append(live_tail)
    gateway = CommandGateway(
        stream.command_producer,
        stream.visibility,
        s.commands_topic,
        s.visible_timeout_ms,
        stream.offer,
        stream.gate,
    )
    assert s.token_keys is not None, "keyfiles.complete() gives every worker its keys"
    api = Api(
        gateway,
        stream.projection,
        metrics,
        ready,
        reachable,
        forwarder,
        stream.visibility.lag,
        s.http_body_timeout_ms / 1000,
        s.http_write_timeout_ms / 1000,
        s.token_keys,
        live_tail,
        stream.keyring,
        Admission(s.http_max_writes, s.http_max_write_wait_ms / 1000, metrics),
    )
    resources.append(await serve(s, api, stream.tokens.admin(api)))
