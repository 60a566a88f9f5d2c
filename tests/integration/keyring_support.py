"""The keyring on the real broker and a real key store, for the keyring's tests: a key store
that counts its queries, a gate that says when a writer is at it, and the ring itself."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer

from events.identity import partition_key
from projections.positions import Position
from services.config import Settings, load_settings
from services.kafka import clients
from services.kafka.clients import KafkaAccess
from services.kafka.partitioner import partition_for
from services.keys.keyring import Keyring
from services.keys.store import Device, KeyStore, Slot, StoredKey
from services.log.broker import EmbeddedBroker, free_port
from services.log.topics import ensure_topics
from services.stream.gate import Gate

APP = "keyring-app"
TOKEN = "device_token"


class CountingStore(KeyStore):
    """The key store, counting its transactions and its queries."""

    writes = 0
    reads = 0

    async def keys_of(self, app_id: str, device_id: str) -> list[StoredKey]:
        self.reads += 1
        return await super().keys_of(app_id, device_id)

    async def newest_keys(self, devices: Iterable[tuple[str, str]]) -> dict[Device, StoredKey]:
        self.reads += 1
        return await super().newest_keys(devices)

    async def write(
        self,
        added: Iterable[StoredKey],
        removed: Iterable[Slot] = (),
        positions: Iterable[Position] = (),
    ) -> None:
        self.writes += 1
        await super().write(added, removed, positions)


@dataclass
class Ring:
    settings: Settings
    access: KafkaAccess
    store: CountingStore
    producer: AIOKafkaProducer
    keyring: Keyring
    gate: WatchedGate


class WatchedGate(Gate):
    """The keyring's gate, telling when a writer is at it (to hold an erasure halfway)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = asyncio.Event()

    @contextlib.asynccontextmanager
    async def passage(self) -> AsyncIterator[None]:
        self.arrived.set()
        async with super().passage():
            yield


@contextlib.asynccontextmanager
async def open_ring(broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[Ring]:
    """A keyring on the broker, its own topics, and a key store in `tmp_path`."""
    settings = load_settings(
        {"KAFKA_BOOTSTRAP": broker.bootstrap, "DEVREG_TOPIC_PREFIX": f"kr{secrets.token_hex(4)}"}
    )
    access = KafkaAccess(broker.bootstrap)
    await ensure_topics(settings, access)
    store = await CountingStore.open(tmp_path / "keys.sqlite")
    assert isinstance(store, CountingStore)
    producer = clients.record_producer(access, linger_ms=0)
    await producer.start()

    def partition_of(app_id: str, device_id: str) -> int:
        return partition_for(partition_key(app_id, device_id), settings.partitions)

    kek = secrets.token_bytes(32)
    gate = WatchedGate()
    keyring = Keyring(store, kek, producer, access, settings.keys_topic, partition_of, gate=gate)
    try:
        yield Ring(settings, access, store, producer, keyring, gate)
    finally:
        await producer.stop()
        await store.close()


def unreadable(ring: Ring) -> Keyring:
    """A keyring on the ring's key store and producer whose reads go to no broker at all."""
    nobody = KafkaAccess(f"127.0.0.1:{free_port()}")
    return Keyring(
        ring.store,
        secrets.token_bytes(32),
        ring.producer,
        nobody,
        ring.settings.keys_topic,
        lambda app_id, device_id: 0,
    )
