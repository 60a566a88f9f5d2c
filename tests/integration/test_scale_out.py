"""Several workers in one consumer group: any worker answers any request, and a worker that
dies or comes back moves its partitions without losing or doubling anything."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from services.broker import EmbeddedBroker
from tests.support import WorkerProcess, call, registration, wait_for

DEVICES = 600
PARTITIONS = "6"


def member(broker: EmbeddedBroker, data_dir: Path, prefix: str) -> WorkerProcess:
    worker = WorkerProcess(
        data_dir, broker.bootstrap, prefix=prefix, env={"DEVREG_PARTITIONS": PARTITIONS}
    )
    worker.extra_env["DEVREG_ADVERTISED_URL"] = worker.base_url
    return worker


async def readiness(worker: WorkerProcess) -> dict[str, object] | None:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{worker.base_url}/readyz") as r,
        ):
            return await r.json() if r.status == 200 else None
    except aiohttp.ClientError:
        return None


async def group_formed(workers: list[WorkerProcess]) -> bool:
    """Every worker ready, knowing the same members, and the partitions split among them."""
    states = [await readiness(w) for w in workers]
    if any(s is None for s in states):
        return False
    urls = {w.base_url for w in workers}
    owned = [p for s in states for p in s["partitions"]]  # type: ignore[index, union-attr]
    return all(set(s["workers"]) == urls for s in states) and sorted(owned) == list(range(6))  # type: ignore[index, arg-type]


async def register_all(workers: list[WorkerProcess], count: int) -> None:
    semaphore = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        worker = workers[i % len(workers)]
        body = registration(f"dev-{i:05d}", channels=["all", f"group-{i % 3}"])
        async with semaphore:
            status, answer = await call("POST", worker.url("messaging/registrations"), json=body)
        assert status == 200, answer

    await asyncio.gather(*(one(i) for i in range(count)))


async def all_readable(worker: WorkerProcess, count: int) -> bool:
    semaphore = asyncio.Semaphore(16)

    async def one(i: int) -> bool:
        async with semaphore:
            status, _ = await call("GET", worker.url(f"messaging/registrations/dev-{i:05d}"))
        return status == 200

    return all(await asyncio.gather(*(one(i) for i in range(count))))


async def channel_listing(worker: WorkerProcess, channel: str) -> list[str]:
    seen: list[str] = []
    cursor = ""
    while True:
        url = worker.url(f"messaging/channels/{channel}/devices?limit=97{cursor}")
        status, body = await call("GET", url)
        assert status == 200, body
        seen.extend(d["deviceId"] for d in body["devices"])
        if body["nextCursor"] is None:
            return seen
        cursor = f"&cursor={body['nextCursor']}"


@pytest.fixture
async def pair(broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[list[WorkerProcess]]:
    first = member(broker, tmp_path / "a", "scale")
    second = member(broker, tmp_path / "b", first.prefix)
    second.prefix = first.prefix = f"{first.prefix}-{tmp_path.name[-6:]}"
    yield [first, second]
    await asyncio.gather(first.stop(), second.stop())


async def test_given_two_workers_then_any_serves_any_device_and_survives_a_kill(
    pair: list[WorkerProcess],
) -> None:
    a, b = pair
    await a.start()
    await b.start()
    await wait_for(lambda: group_formed(pair), 30, "the group to form with both workers")

    # When devices are registered through either worker
    await register_all(pair, DEVICES)

    # Then every one reads back through the other, and channel pages agree everywhere
    assert await all_readable(a, DEVICES)
    assert await all_readable(b, DEVICES)
    expected = [f"dev-{i:05d}" for i in range(DEVICES)]
    assert await channel_listing(a, "all") == expected
    assert await channel_listing(b, "all") == expected
    status, body = await call("GET", b.url("messaging/channels"))
    counts = {c["channel"]: c["devices"] for c in body["channels"]}
    assert counts == {
        "all": DEVICES,
        "group-0": DEVICES // 3,
        "group-1": DEVICES // 3,
        "group-2": DEVICES // 3,
    }

    # When one worker is killed, the survivor takes its partitions and serves every device
    await b.kill()
    await wait_for(lambda: group_formed([a]), 30, "the survivor to own every partition")
    await wait_for(lambda: all_readable(a, DEVICES), 30, "the survivor to serve all devices")

    # And when it comes back, ownership is shared again and nothing was lost or doubled
    await b.start()
    await wait_for(lambda: group_formed(pair), 30, "the group to re-form")
    assert await all_readable(b, DEVICES)
    assert await channel_listing(b, "all") == expected
    status, body = await call("GET", a.url("messaging/channels"))
    assert status == 200
    assert {c["channel"]: c["devices"] for c in body["channels"]}["all"] == DEVICES
