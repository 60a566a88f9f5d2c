"""The embedded mode's keyring (services/keys/applied.py): its key store's positions never pass
a tombstone whose key is not deleted yet, so a restart that reads on from them still erases."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Iterable
from pathlib import Path

import aiosqlite

from events.identity import partition_key
from projections.positions import Position
from services.config import Settings, load_settings
from services.kafka import clients
from services.kafka.clients import KafkaAccess
from services.kafka.partitioner import partition_for
from services.keys.keyring import Keyring
from services.keys.store import KeyStore, Slot, StoredKey
from services.log.broker import EmbeddedBroker
from services.log.journal import Journal
from services.log.segments import SegmentLog
from services.log.topics import ensure_topics
from tests.integration.keyring_support import (
    APP,
)


class HeldErasure(KeyStore):
    """The key store, holding a transaction that deletes keys until `release` is set (an
    erasure halfway: its tombstones acknowledged, its keys not deleted yet)."""

    def __init__(self, conn: aiosqlite.Connection):
        super().__init__(conn)
        self.held, self.release = asyncio.Event(), asyncio.Event()

    async def write(
        self,
        added: Iterable[StoredKey],
        removed: Iterable[Slot] = (),
        positions: Iterable[Position] = (),
    ) -> None:
        removed = list(removed)
        if removed:
            self.held.set()
            await self.release.wait()
        await super().write(added, removed, positions)


def same_partition(settings: Settings, count: int) -> list[str]:
    """`count` device ids of one partition."""
    found: dict[int, list[str]] = {}
    for n in range(10_000):
        name = f"same{n}"
        group = found.setdefault(partition_for(partition_key(APP, name), settings.partitions), [])
        group.append(name)
        if len(group) == count:
            return group
    raise AssertionError("no partition holds enough devices")


async def test_given_an_embedded_keyring_killed_before_an_erasure_deleted_then_a_restart_erases(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    # Given the embedded mode's keyring (a kept log), with a key for two devices of one
    # partition, and its store's position past them
    settings = load_settings(
        {"KAFKA_BOOTSTRAP": broker.bootstrap, "DEVREG_TOPIC_PREFIX": f"kr{secrets.token_hex(4)}"}
    )
    kept = tmp_path / "log"
    access = KafkaAccess(broker.bootstrap, kept_log=str(kept))
    await ensure_topics(settings, access)
    journal = Journal(SegmentLog(kept), access, [settings.keys_topic])
    producer = clients.record_producer(access, linger_ms=0)
    await producer.start()
    kek = secrets.token_bytes(32)

    def partition_of(app_id: str, device_id: str) -> int:
        return partition_for(partition_key(app_id, device_id), settings.partitions)

    def keyring(store: KeyStore) -> Keyring:
        topic = settings.keys_topic
        return Keyring(store, kek, producer, access, topic, partition_of, keep=journal.keep)

    gone, kept_device, later = same_partition(settings, 3)
    partition = partition_of(APP, gone)
    try:
        store = await HeldErasure.open(tmp_path / "keys.sqlite")
        first = keyring(store)
        await first.handed(range(settings.partitions))
        await first.ensure_all([(APP, gone), (APP, kept_device)])

        # When its erasure of one device is acknowledged on the keys topic but its keys are
        # not deleted yet, a key made behind the tombstone is acknowledged, and the process
        # dies there (the erasure never deletes; the store closes as a SIGKILL leaves it)
        assert isinstance(store, HeldErasure)
        erasing = asyncio.ensure_future(first.erase([(APP, gone)]))
        await asyncio.wait_for(store.held.wait(), 10.0)
        await first.ensure(APP, later)
        [position] = [p for p in await store.positions() if p.partition == partition]
        erasing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await erasing
        await store.close()

        # Then the store's position stayed at the tombstone (the first two keys at 0 and 1,
        # the tombstone at 2, the later key at 3), the key is still in the store as the
        # crash left it, and a restart that reads on from the position erases it
        store = await KeyStore.open(tmp_path / "keys.sqlite")
        [position] = [p for p in await store.positions() if p.partition == partition]
        assert position.next_offset == 2
        assert len(await store.keys_of(APP, gone)) == 1
        again = keyring(store)
        await again.handed(range(settings.partitions))
        assert await again.current(APP, gone) is None
        assert await store.keys_of(APP, gone) == []
        assert len(await store.keys_of(APP, kept_device)) == 1
        assert len(await store.keys_of(APP, later)) == 1
        [position] = [p for p in await store.positions() if p.partition == partition]
        assert position.next_offset == 4
        await store.close()
    finally:
        await producer.stop()
        journal.segments.close()
