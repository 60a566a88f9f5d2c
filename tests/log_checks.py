"""Watching a worker's log in tests: topics read as they grow, the positions its stores
committed, and the per-device version and hash-chain check."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from events import AnyEvent, ChannelCreated
from events.identity import event_hash
from projections.positions import Record
from tests.support import wait_for


def committed(store: Path, topic: str) -> dict[int, int]:
    """The positions a store (decisions.sqlite, projection.sqlite) committed in `topic`:
    partition -> next offset. Read-only: the worker may be writing."""
    if not store.exists():
        return {}
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT partition, next_offset FROM kafka_offsets WHERE topic = ?", (topic,)
        )
        return dict(rows.fetchall())


def assert_chains(events: Iterable[AnyEvent]) -> None:
    """Per device, versions are gapless from 1 and each event's prev_hash is the previous
    event's hash, its own hash that of its content (`events` holds one copy of each)."""
    chains: dict[tuple[str, str], list[AnyEvent]] = defaultdict(list)
    for event in events:
        if not isinstance(event, ChannelCreated):
            chains[(event.app_id, event.device_id)].append(event)
    for device_events in chains.values():
        device_events.sort(key=lambda e: e.version)
        assert [e.version for e in device_events] == list(range(1, len(device_events) + 1))
        previous = ""
        for event in device_events:
            assert event.prev_hash == previous
            assert event.hash == event_hash(event)
            previous = event.hash


class LogTail:
    """Every record of some topics, read from the start as they grow, handed to `seen` as
    they arrive. End offsets are never asked for (docs/design.md §10): `drain` reads until a fetch
    comes back empty, which is the end only while nothing writes (the worker is dead, or idle).
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Iterable[str],
        seen: Callable[[Record], None] = lambda record: None,
    ):
        self.records: dict[str, list[Record]] = {topic: [] for topic in topics}
        self._seen = seen
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10
        )

    async def start(self) -> None:
        await self._consumer.start()
        await self._consumer.topics()  # all-topics metadata: naming one would create it
        partitions = [
            TopicPartition(topic, p)
            for topic in self.records
            for p in self._consumer.partitions_for_topic(topic) or ()
        ]
        assert {tp.topic for tp in partitions} == set(self.records), "a topic is missing"
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)

    async def stop(self) -> None:
        await asyncio.sleep(0)  # aiokafka 0.14: stop() right after start() can raise
        await self._consumer.stop()

    async def poll(self) -> int:
        """Read what has arrived; return how many records that was."""
        batches = await self._consumer.getmany(timeout_ms=100)
        for tp, batch in batches.items():
            for r in batch:
                record = Record(tp.topic, tp.partition, r.offset, r.timestamp, r.key, r.value)
                self.records[tp.topic].append(record)
                self._seen(record)
        return sum(len(batch) for batch in batches.values())

    async def drain(self, deadline_s: float) -> None:
        async def empty_fetch() -> bool:
            return await self.poll() == 0

        await wait_for(empty_fetch, deadline_s, "an empty fetch")

    async def until(self, condition: Callable[[], bool], deadline_s: float, what: str) -> None:
        async def holds() -> bool:
            await self.poll()
            return condition()

        await wait_for(holds, deadline_s, what)
