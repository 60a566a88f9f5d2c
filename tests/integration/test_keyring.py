"""The keyring on the real broker and a real key store: keys created once per device, in
groups, and what it holds for a device always what its key store holds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

import aiosqlite
import pytest
from aiokafka import AIOKafkaProducer

from events import sealed
from events.identity import partition_key
from projections.positions import Position
from services.config import Settings, load_settings
from services.kafka import clients
from services.kafka.clients import KafkaAccess
from services.kafka.partitioner import partition_for
from services.keys import cipher, records
from services.keys import reads as reads_module
from services.keys.keyring import Keyring
from services.keys.store import Device, KeyStore, Slot, StoredKey
from services.log.broker import EmbeddedBroker, free_port
from services.log.journal import Journal
from services.log.reader import LogError, LogReader
from services.log.segments import SegmentLog
from services.log.topics import ensure_topics
from services.stream.gate import Gate
from tests.support import read_records, wait_for

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


class CountedOpenings:
    """Counts the AES-GCM openings the keyring makes (cipher.open_sealed)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.count = 0
        real = cipher.open_sealed

        def counted(text: str, key: bytes, aad: bytes) -> str | None:
            self.count += 1
            return real(text, key, aad)

        monkeypatch.setattr(cipher, "open_sealed", counted)


@pytest.fixture
async def ring(broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[Ring]:
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


async def test_given_many_callers_for_new_devices_then_each_gets_one_key_made_in_one_group(
    ring: Ring,
) -> None:
    # Given 200 new devices, each asked for by three callers in the same loop turn
    devices = [(APP, f"d{n}") for n in range(200)]
    singles = [ring.keyring.ensure(*d) for d in devices for _ in range(3)]

    # When they all wait for their keys
    each, together = await asyncio.gather(
        asyncio.gather(*singles), ring.keyring.ensure_all(devices)
    )

    # Then every caller of a device got the same key, the group looked them up with one query
    # and made them in one transaction, and the store and the keys topic hold exactly one key
    # per device
    for n in range(len(devices)):
        assert each[3 * n] == each[3 * n + 1] == each[3 * n + 2] == together[n]
    assert (ring.store.reads, ring.store.writes) == (1, 1)
    stored = await ring.store.newest_keys(devices)
    assert {d: k.key_id for d, k in stored.items()} == {
        d: together[n][0] for n, d in enumerate(devices)
    }
    on_topic = await read_records(ring.access.bootstrap, ring.settings.keys_topic, 200, 10.0)
    assert len(on_topic) == 200
    assert len({records.slot_of(r.key) for r in on_topic}) == 200

    # And asked again, the keys come from what the keyring holds: no query, no transaction
    reads = ring.store.reads
    assert await ring.keyring.ensure_all(devices) == together
    assert [await ring.keyring.ensure(*d) for d in devices] == together
    assert (ring.store.reads, ring.store.writes) == (reads, 1)


async def test_given_an_erased_device_then_its_next_key_is_a_new_one(ring: Ring) -> None:
    # Given a device with a key, then erased
    first = await ring.keyring.ensure(APP, "gone")
    assert await ring.keyring.erase([(APP, "gone")]) == 1

    # Then it has no current key, and ensuring one makes a new key
    assert await ring.keyring.current(APP, "gone") is None
    second = await ring.keyring.ensure(APP, "gone")
    assert second[0] != first[0]
    assert [k.key_id for k in await ring.store.keys_of(APP, "gone")] == [second[0]]


async def sealed_tokens(ring: Ring, devices: list[str]) -> list[tuple[str, str]]:
    """(device id, sealed token) for each device, sealed with its key (made if new)."""
    keys = await ring.keyring.ensure_all([(APP, d) for d in devices])
    return [
        (d, ring.keyring.seal(APP, d, TOKEN, f"push-{d}", key))
        for d, key in zip(devices, keys, strict=True)
    ]


async def test_given_tokens_opened_once_then_reading_them_again_opens_none(
    ring: Ring, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a page of tokens, opened once
    page = await sealed_tokens(ring, [f"page{n}" for n in range(100)])
    openings = CountedOpenings(monkeypatch)
    expected = [f"push-{d}" for d, _ in page]
    assert await ring.keyring.open_all(APP, TOKEN, page) == expected
    assert openings.count == 100

    # When the page and one of its tokens are read again
    again = await ring.keyring.open_all(APP, TOKEN, page)
    device, text = page[7]
    one = await ring.keyring.open(APP, device, TOKEN, text)

    # Then they are what they were, and nothing was opened again
    assert (again, one) == (expected, "push-page7")
    assert openings.count == 100
    # but a text that is not the one opened (tampered with) is opened, and fails
    device, text = page[3]
    tampered = text[:-2] + ("AA" if not text.endswith("AA") else "BB")
    assert await ring.keyring.open(APP, device, TOKEN, tampered) == sealed.ERASED
    assert openings.count == 101


async def test_given_tokens_opened_then_their_device_erased_then_they_open_erased(
    ring: Ring,
) -> None:
    # Given the tokens of a page opened (remembered)
    page = await sealed_tokens(ring, ["kept", "forgotten"])
    assert await ring.keyring.open_all(APP, TOKEN, page) == ["push-kept", "push-forgotten"]

    # When one device is erased
    assert await ring.keyring.erase([(APP, "forgotten")]) == 1

    # Then its token is erased wherever it is read, and the other one is not
    assert await ring.keyring.open_all(APP, TOKEN, page) == ["push-kept", sealed.ERASED]
    device, text = page[1]
    assert await ring.keyring.open(APP, device, TOKEN, text) == sealed.ERASED


async def test_given_a_token_read_while_its_erasure_is_under_way_then_it_is_erased_after(
    ring: Ring,
) -> None:
    # Given a device's token, and its erasure held at the keys topic (its tombstones not
    # acknowledged yet: the key is still in the key store)
    [(device, text)] = await sealed_tokens(ring, ["racing"])
    kid = sealed.key_id(text)
    assert kid is not None
    await ring.gate.close()
    ring.gate.arrived.clear()  # the key's creation passed the gate already
    erasing = asyncio.ensure_future(ring.keyring.erase([(APP, device)]))
    await asyncio.wait_for(ring.gate.arrived.wait(), 10.0)

    # When a reader opens the token meanwhile (the store still holds its key)
    assert await ring.keyring.open(APP, device, TOKEN, text) == f"push-{device}"

    # Then once the erasure is done, neither the token nor the key is served from memory
    ring.gate.open()
    assert await asyncio.wait_for(erasing, 10.0) == 1
    assert await ring.keyring.open(APP, device, TOKEN, text) == sealed.ERASED
    assert await ring.keyring.key(APP, device, kid) is None
    assert await ring.keyring.current(APP, device) is None


async def test_given_a_partition_handed_back_then_keys_erased_meanwhile_are_not_current(
    ring: Ring,
) -> None:
    # Given a device whose key this keyring created and holds, and whose token it opened
    text = ring.keyring.seal(
        APP, "moved", TOKEN, "push-moved", await ring.keyring.ensure(APP, "moved")
    )
    assert await ring.keyring.open(APP, "moved", TOKEN, text) == "push-moved"
    [stored] = await ring.store.keys_of(APP, "moved")

    # When another worker, owning the partition meanwhile, erased the key on the topic
    slot = (stored.app_id, stored.device_id, stored.key_id)
    await ring.producer.send_and_wait(
        ring.settings.keys_topic, None, key=records.record_key(slot), partition=stored.partition
    )
    # and the partition is handed to this worker again
    await ring.keyring.handed([stored.partition])

    # Then the token it opened is not served from memory (asked before the partition's keys
    # are read again: the read would let it go too), and once read again the keyring holds
    # no key for the device
    assert await ring.keyring.open(APP, "moved", TOKEN, text) == sealed.ERASED
    assert await ring.keyring.current(APP, "moved") is None
    assert await ring.keyring.key(APP, "moved", stored.key_id) is None


async def test_given_partitions_handed_then_their_keys_are_read_at_once_in_one_read(
    ring: Ring, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a keyring counting the readers it opens
    opened: list[int] = []

    class CountedReader(LogReader):
        def __init__(self, kafka: KafkaAccess):
            opened.append(1)
            super().__init__(kafka)

    monkeypatch.setattr(reads_module, "LogReader", CountedReader)

    # When it is handed every partition
    partitions = range(ring.settings.partitions)
    await ring.keyring.handed(partitions)

    # Then it reads them all at once, before any request asks, with one reader
    assert await wait_for(lambda: all(ring.keyring.caught_up(p) for p in partitions), 10.0)
    assert len(opened) == 1
    # and a first key in every partition waits for no reader of its own
    devices = [(APP, f"p{n}") for n in range(10 * ring.settings.partitions)]
    assert {partition_for(partition_key(*d), ring.settings.partitions) for d in devices} == set(
        partitions
    )
    await ring.keyring.ensure_all(devices)
    assert len(opened) == 1


async def test_given_the_keys_topic_unreadable_then_the_read_is_said_and_the_need_fails(
    ring: Ring, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a keyring whose broker cannot be reached for reading
    keyring = unreadable(ring)

    # When it is handed a partition
    with caplog.at_level(logging.WARNING, logger="services.keys.reads"):
        await keyring.handed([0])

        # Then the failed read is said, and a request that needs the partition gets the error
        assert await wait_for(lambda: "not read from" in caplog.text, 30.0)
    with pytest.raises(LogError):
        await keyring.current(APP, "anyone")


async def test_given_a_partition_whose_read_failed_then_asking_if_read_reads_it_again(
    ring: Ring, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a keyring whose read of partition 0 failed (its broker was unreachable)
    keyring = unreadable(ring)
    with caplog.at_level(logging.WARNING, logger="services.keys.reads"):
        await keyring.handed([0])
        await wait_for(lambda: "not read from" in caplog.text, 30.0, "the failed read")
    assert not keyring.caught_up(0)

    # When the broker is reachable again (the keyring's access pointed at it) and readiness
    # asks whether partition 0 was read
    keyring._reads._kafka = ring.access
    assert not keyring.read(0)

    # Then a new read is made, and partition 0 is read
    assert await wait_for(lambda: keyring.read(0), 10.0, "partition 0 read")


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
