"""The keyring on the real broker and a real key store: keys created once per device, in
groups, and what it holds for a device always what its key store holds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events import sealed
from events.identity import partition_key
from services.kafka.clients import KafkaAccess
from services.kafka.partitioner import partition_for
from services.keys import reads as reads_module
from services.keys import records
from services.log.broker import EmbeddedBroker
from services.log.reader import LogError, LogReader
from tests.integration.keyring_support import (
    APP,
    TOKEN,
    Ring,
    open_ring,
    unreadable,
)
from tests.support import wait_for
from tests.topics import read_records


@pytest.fixture
async def ring(broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[Ring]:
    async with open_ring(broker, tmp_path) as opened:
        yield opened


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
