"""The CPU two parts of the token lifecycle cost per new device, in process.

    python -m bench.token_parts [N] [--group G]

- the keyring making new devices' keys (the key store, the keys topic on a real embedded
  broker, acknowledged), G devices asked for at once as G concurrent requests would, in two
  halves (past the keyring's 100,000 remembered keys, the second half shows what remembering
  more costs: run N = 250000), then the same devices asked for again (keys known);
- the token index folding one new claim per device, in batches of G (a real SQLite file).

Prints the process CPU per device of each; run it back to back with another tree
(`PYTHONPATH=<tree>`) to compare. Its figures are in docs/benchmarks.md, never in code.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from events.identity import partition_key
from projections.positions import Record
from services.config import load_settings
from services.kafka import clients
from services.kafka.clients import KafkaAccess
from services.kafka.partitioner import partition_for
from services.keys.keyring import Keyring
from services.keys.store import KeyStore
from services.log.broker import EmbeddedBroker
from services.log.topics import ensure_topics
from services.tokens import records
from services.tokens.index_store import IndexStore
from services.tokens.records import Claim

APP = "app"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _per_device(
    n: int, group: int, step: Callable[[int, int], Awaitable[object]], first: int = 0
) -> float:
    """CPU µs per device of `step(start, end)` over devices first .. first + n, in groups."""
    before = _cpu()
    for start in range(first, first + n, group):
        await step(start, min(first + n, start + group))
    return (_cpu() - before) / n * 1e6


async def _keyring(bootstrap: str, scratch: Path, n: int, group: int) -> tuple[float, float, float]:
    """New keys (the first half of n, then the second), then known keys."""
    settings = load_settings(
        {"KAFKA_BOOTSTRAP": bootstrap, "DEVREG_TOPIC_PREFIX": f"tp{secrets.token_hex(3)}"}
    )
    access = KafkaAccess(bootstrap)
    await ensure_topics(settings, access)
    store = await KeyStore.open(scratch / "keys.sqlite")
    producer = clients.record_producer(access, linger_ms=0)
    await producer.start()
    try:

        def partition_of(app_id: str, device_id: str) -> int:
            return partition_for(partition_key(app_id, device_id), settings.partitions)

        keyring = Keyring(
            store, secrets.token_bytes(32), producer, access, settings.keys_topic, partition_of
        )
        await keyring.handed(range(settings.partitions))

        async def ask(start: int, end: int) -> object:
            return await asyncio.gather(*(keyring.ensure(APP, f"d{k}") for k in range(start, end)))

        await ask(n, n + group)  # warm: the topic's partitions read, connections made
        half = n // 2
        first = await _per_device(half, group, ask)
        second = await _per_device(n - half, group, ask, first=half)
        return first, second, await _per_device(n, group, ask)
    finally:
        await producer.stop()
        await store.close()


async def _index(scratch: Path, n: int, group: int) -> float:
    index = await IndexStore.open(scratch / "index.sqlite")
    claims = [
        Record(
            "tokens",
            0,
            k,
            0,
            records.record_key((APP, f"fp{k}", f"d{k}")),
            records.record_value(Claim(f"r{k}", 1, k)),
        )
        for k in range(n)
    ]

    async def fold(start: int, end: int) -> None:
        _, positions = await index.fold(claims[start:end], frozenset({APP}))
        await index.commit(positions)

    try:
        return await _per_device(n, group, fold)
    finally:
        await index.close()


async def _main(n: int, group: int) -> None:
    with tempfile.TemporaryDirectory(prefix="devreg-token-parts-") as raw:
        scratch = Path(raw)
        broker = EmbeddedBroker(log_path=scratch / "tansu.log")
        await broker.start()
        try:
            started = time.perf_counter()
            new, later, known = await _keyring(broker.bootstrap, scratch, n, group)
            folded = await _index(scratch, n, group)
        finally:
            await broker.stop()
    print(f"{n:,} devices in groups of {group} ({time.perf_counter() - started:.1f} s):")
    print(f"  keyring, new keys (made, stored, acknowledged): {new:.1f} µs CPU per device")
    print(f"  ... the second half of them:                    {later:.1f} µs CPU per device")
    print(f"  keyring, known keys:                            {known:.1f} µs CPU per device")
    print(f"  token index, folding new claims:                {folded:.1f} µs CPU per device")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.token_parts")
    parser.add_argument("n", type=int, nargs="?", default=20_000)
    parser.add_argument("--group", type=int, default=64, help="devices asked for at once")
    args = parser.parse_args()
    asyncio.run(_main(args.n, args.group))


if __name__ == "__main__":
    main()
