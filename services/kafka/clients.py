"""The aiokafka adapter: every Kafka client devreg creates is built here, and the embedded
broker's quirks are handled here, not in the callers.

Producers, consumers and admin clients of the worker and of the CLI all come from one
`KafkaAccess` (where the brokers are, and how to connect to them), so a connection setting
reaches every client at once. faust builds its own clients from the same access
(services/kafka/faust_app.py).

Credentials (TLS, SASL PLAIN / SCRAM-SHA-256 / SCRAM-SHA-512) are part of the access, so every
client gets them; faust gets the same as its broker_credentials (services/kafka/faust_app.py).

The embedded Tansu broker's quirks (docs/design.md, "Broker facts") handled here:
- End offsets are only a lower bound: under-reported when a partition's last record batch
  holds several records (but never 0 for a partition that holds a record). `end_offsets`
  answers them as such; `at_end` decides "read to the end" from the fetch position and the
  high-water mark of the last fetch as well, after a whole idle window brought nothing.
- Every fetch is held for the consumer's full max-wait, even when data is there: consumers get
  a 10 ms wait unless they ask for another.
- No idempotent producer and no transactions: producers never enable them, and nothing in
  devreg relies on them.
- It advertises the port others use (services/log/public_port.py), which a renewal holds
  shut: `connect_directly` sends this process's clients, faust's included, to the broker's
  own port instead (the one private name: `aiokafka.client.create_conn`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import aiokafka.client
import msgspec
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.helpers import create_ssl_context

from services.kafka.partitioner import key_partition

FETCH_MAX_WAIT_MS = 10  # Tansu holds every fetch this long, even when data is there
Ends = dict[tuple[str, int], int]


Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaAccess(msgspec.Struct, frozen=True):
    """Where Kafka is and how every devreg client connects to it: the security protocol, the
    SASL mechanism and credentials, the CA that signs the brokers' certificates (None: the
    system's trust store). Who may then read or publish what is the cluster's ACLs' business.
    """

    bootstrap: str
    security_protocol: Protocol = "PLAINTEXT"
    sasl_mechanism: Mechanism | None = None
    username: str | None = None
    password: str | None = None
    cafile: str | None = None
    # The embedded mode's kept log (services/log/segments.py): the history below what the
    # embedded broker holds. Readers read it there (services/log/reader.py).
    kept_log: str | None = None

    def __repr__(self) -> str:  # never show the password
        return (
            f"KafkaAccess({self.bootstrap!r}, {self.security_protocol}"
            f"{f', {self.sasl_mechanism} as {self.username!r}' if self.sasl else ''})"
        )

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client context that checks the brokers' certificates and host names (made per
        client: a context is not shared across processes)."""
        return create_ssl_context(cafile=self.cafile) if self.tls else None

    def options(self) -> dict[str, Any]:
        """Constructor arguments shared by aiokafka's producers, consumers and admin clients."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
        }
        if self.tls:
            options["ssl_context"] = self.ssl_context()
        if self.sasl:
            # aiokafka names the user and password "plain" for the SCRAM mechanisms too.
            options.update(
                sasl_mechanism=self.sasl_mechanism or "PLAIN",
                sasl_plain_username=self.username,
                sasl_plain_password=self.password,
            )
        return options


def producer(access: KafkaAccess, **options: Any) -> AIOKafkaProducer:
    """`acks=all`; never idempotent (the embedded broker has no idempotent producer, and
    nothing in devreg depends on it: readers skip re-sent events by version)."""
    settings: dict[str, Any] = {"acks": "all", **options, "enable_idempotence": False}
    return AIOKafkaProducer(**access.options(), **settings)


def consumer(access: KafkaAccess, **options: Any) -> AIOKafkaConsumer:
    """A consumer with no group and no commits unless asked (devreg keeps its positions in
    SQLite), reading from the earliest record, with a short fetch wait."""
    settings: dict[str, Any] = {
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
        **options,
    }
    return AIOKafkaConsumer(**access.options(), **settings)


def admin(access: KafkaAccess) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**access.options())


def client(access: KafkaAccess, **options: Any) -> AIOKafkaClient:
    """A bare client (metadata requests only)."""
    return AIOKafkaClient(**access.options(), **options)


_DIRECT: dict[tuple[str, int], tuple[str, int]] = {}
_create_conn = aiokafka.client.create_conn


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def _create_direct_conn(host: str, port: int, *args: Any, **kwargs: Any) -> Any:
    host, port = _DIRECT.get((host, port), (host, port))
    return await _create_conn(host, port, *args, **kwargs)


@contextlib.contextmanager
def connect_directly(advertised: str, actual: str) -> Iterator[None]:
    """While the block runs, every aiokafka client of this process that is sent to the
    broker at `advertised` (by a metadata answer) connects to `actual` instead."""
    _DIRECT[_address(advertised)] = _address(actual)
    aiokafka.client.create_conn = _create_direct_conn
    try:
        yield
    finally:
        del _DIRECT[_address(advertised)]
        if not _DIRECT:
            aiokafka.client.create_conn = _create_conn


async def stop_consumer(kafka_consumer: AIOKafkaConsumer) -> None:
    # aiokafka 0.14's stop() raises CancelledError if the group-less coordinator task that
    # start() created has not run yet (a consumer stopped at once, a topic missing): yield once.
    await asyncio.sleep(0)
    await kafka_consumer.stop()


async def end_offsets(
    kafka_consumer: AIOKafkaConsumer, tps: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """The broker's end offsets: exact on Apache Kafka, a lower bound on the embedded broker
    (never 0 for a partition that holds a record)."""
    ends: dict[TopicPartition, int] = await kafka_consumer.end_offsets(tps)
    return ends


async def at_end(kafka_consumer: AIOKafkaConsumer, tp: TopicPartition, end: int) -> bool:
    """After a whole idle window brought nothing for `tp`: whether its reading is over. The
    position must have reached the reported `end` (a lower bound) and the high-water mark of
    the last fetch response (None until one arrived at all)."""
    position: int = await kafka_consumer.position(tp)
    highwater: int | None = kafka_consumer.highwater(tp)
    return position >= end and highwater is not None and highwater <= position


async def log_ends(access: KafkaAccess, topics: Mapping[str, int]) -> Ends:
    """End offsets of every partition of `topics` (name → partition count)."""
    kafka_consumer = consumer(access)
    await kafka_consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t, n in topics.items() for p in range(n)]
        ends = await end_offsets(kafka_consumer, partitions)
    finally:
        await stop_consumer(kafka_consumer)
    return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}


# The processor hands each partition's events and outcomes of a decided batch to Kafka as one
# record batch (services/stream/batch_sender.py), and the scheduler its expiry commands, sent at
# once, without lingering. Room for a 2000-command batch on ~6 partitions; Kafka refuses a batch
# over the topic's max.message.bytes (1 MiB by default). One record batch per decided batch also
# keeps the log's batches large: the embedded broker reads a log of small ones slowly
# (docs/audit.md).
BATCH_BYTES = 512 * 1024


def record_producer(kafka: KafkaAccess, linger_ms: int) -> AIOKafkaProducer:
    """A worker's producer: devreg's partitioner, and record batches with room for a decided
    batch."""
    return producer(
        kafka, linger_ms=linger_ms, max_batch_size=BATCH_BYTES, partitioner=key_partition
    )


def worker_producers(kafka: KafkaAccess) -> tuple[AIOKafkaProducer, AIOKafkaProducer]:
    """A worker's two producers, one for the processor's events and outcomes, one for
    commands (HTTP, the schedulers) and keys: aiokafka keeps one produce request in flight per
    broker connection, so each would otherwise queue behind the other's. Commands go without
    a linger, so a quiet POST's command goes out at once; under load nothing is lost: what
    accumulates while a request is in flight goes out together in the next."""
    return record_producer(kafka, linger_ms=1), record_producer(kafka, linger_ms=0)
