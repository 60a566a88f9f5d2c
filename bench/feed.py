"""Feeding devreg straight through Kafka, and watching the projection fill up.

Commands are encoded before the clock starts and published with `create_batch`/`send_batch`
(the fastest way aiokafka has, ~178k msgs/s here), each to the partition devreg's own
producer would pick for its key, so the HTTP API and the benchmark agree on who owns a device.
A partition is processed in order, so once the last device published to every partition is
in the projection, all of them are: the wait polls a handful of point lookups on the
worker's SQLite file (read-only), never a COUNT over a million rows.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from bench import load
from bench.stack import APP_ID, Worker
from bench.stats import percentile
from events import RegisterDevice, encode
from events.identity import partition_key

MakeCommand = Callable[[int], RegisterDevice]
Keyed = tuple[bytes, bytes]  # (key, value)


def device_id(n: int) -> str:
    return f"device-{n:08d}"


def registration(
    channels: tuple[str, ...] = ("news",), expiration: int | None = None
) -> MakeCommand:
    """RegisterDevice number n: a new device, as an app registering it for the first time."""
    issued_at = time.time_ns() // 1_000_000

    def make(n: int) -> RegisterDevice:
        return RegisterDevice(
            command_id=f"bench-{n}",
            app_id=APP_ID,
            device_id=device_id(n),
            issued_at=issued_at,
            device_token=f"token-{n:08d}-{'x' * 40}",
            os="ANDROID" if n % 3 else "IOS",
            os_version="14",
            channels=channels,
            expiration=expiration,
        )

    return make


class Feed(msgspec.Struct):
    """Encoded commands per partition, and each partition's last device (the one to watch)."""

    by_partition: dict[int, list[Keyed]]
    last_device: dict[int, str]
    count: int


def prepare(n: int, partitions: int, make: MakeCommand, first: int = 0) -> Feed:
    all_partitions = list(range(partitions))
    partitioner = DefaultPartitioner()
    by_partition: dict[int, list[Keyed]] = {p: [] for p in all_partitions}
    last: dict[int, str] = {}
    for i in range(first, first + n):
        command = make(i)
        key = partition_key(command.app_id, command.device_id)
        p = partitioner(key, all_partitions, all_partitions)
        by_partition[p].append((key, encode(command)))
        last[p] = command.device_id
    return Feed(by_partition, last, n)


def producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        enable_idempotence=False,
        max_batch_size=256 * 1024,
        max_request_size=4 * 1024 * 1024,
    )


async def publish(bootstrap: str, topic: str, feed: Feed) -> float:
    """Publish every command of `feed`; return the seconds until Kafka acknowledged all."""
    client = producer(bootstrap)
    await client.start()
    try:
        started = time.perf_counter()
        acks = await asyncio.gather(
            *(_publish_partition(client, topic, p, rs) for p, rs in feed.by_partition.items())
        )
        await asyncio.gather(*(ack for partition_acks in acks for ack in partition_acks))
        return time.perf_counter() - started
    finally:
        await client.stop()


async def _publish_partition(
    client: AIOKafkaProducer, topic: str, partition: int, records: list[Keyed]
) -> list[asyncio.Future[object]]:
    acks: list[asyncio.Future[object]] = []
    i = 0
    while i < len(records):
        batch = client.create_batch()
        while i < len(records):
            key, value = records[i]
            if batch.append(key=key, value=value, timestamp=None) is None:
                break  # full: this record opens the next batch
            i += 1
        acks.append(await client.send_batch(batch, topic, partition=partition))
    return acks


def read_only(path: Path) -> sqlite3.Connection:
    """The worker's projection, opened read-only (WAL lets it read while the worker writes)."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)


def timed_queries(
    projection: Path, seconds: float, query: Callable[[sqlite3.Connection, int], None]
) -> load.Summary:
    """`query(db, now_ms)` back to back for `seconds` on the projection (read-only), in this
    process: the in-process baseline of a query benchmark (queries/s, per-query latency)."""
    db = read_only(projection)
    latencies: list[float] = []
    clock = time.perf_counter
    try:
        started = clock()
        while (begin := clock()) - started < seconds:
            query(db, time.time_ns() // 1_000_000)
            latencies.append((clock() - begin) * 1000)
        elapsed = clock() - started
    finally:
        db.close()
    return load.Summary(
        len(latencies) / elapsed, percentile(latencies, 50), percentile(latencies, 99), 0
    )


def has_device(db: sqlite3.Connection, device: str) -> bool:
    row = db.execute(
        "SELECT 1 FROM devices WHERE app_id = ? AND device_id = ?", (APP_ID, device)
    ).fetchone()
    return row is not None


async def wait_visible(
    workers: Worker | list[Worker], feed: Feed, deadline_s: float, poll_s: float = 0.01
) -> float:
    """Wait until every partition's last device is in a projection (its owner's, with several
    workers); return time.perf_counter() at that moment. Raises TimeoutError at the
    deadline, WorkerError if a worker died."""
    group = workers if isinstance(workers, list) else [workers]
    end = time.perf_counter() + deadline_s
    dbs = [read_only(w.projection_path) for w in group]  # created before they were ready
    try:
        waiting = set(feed.last_device.values())
        while waiting:
            waiting = {d for d in waiting if not any(has_device(db, d) for db in dbs)}
            if not waiting:
                break
            for worker in group:
                worker.check()
            if time.perf_counter() > end:
                raise TimeoutError(f"{len(waiting)} partitions not caught up in {deadline_s}s")
            await asyncio.sleep(poll_s)
        return time.perf_counter()
    finally:
        for db in dbs:
            db.close()


def count_devices(projection: Path) -> int:
    db = read_only(projection)
    try:
        return int(db.execute("SELECT COUNT(*) FROM devices").fetchone()[0])
    finally:
        db.close()
