"""The hand-over gate, end to end (docs/reliability.md, 10e): when a worker dies, the survivor
that is handed its partitions answers a device request on one of them 503/5902 until its
projection has applied that partition up to the log's end at the hand-over, and then serves
the device as last registered: never from rows the dead worker had moved past (a stale
token, or "unknown device").

The survivor folds one event per batch (DEVREG_BATCH_SIZE=1), so its catching up lasts
seconds: long enough to be asked during it, every few milliseconds, without a race.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.log.broker import EmbeddedBroker
from services.stream.ownership import Ownership
from tests.integration.scale_group import (
    APP,
    PARTITIONS,
    channel_counts,
    group_formed,
    member,
    publish_registrations,
)
from tests.support import WorkerProcess, call, registration, wait_for

FILLER = 2000  # devices registered straight to Kafka: history for the survivor to fold
CATCHING_UP = "catching up"  # in the gate's 5902 message (the dead owner's reads "did not")


@pytest.fixture
async def pair(broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[list[WorkerProcess]]:
    prefix = f"gate-{uuid.uuid4().hex[:8]}"
    first = member(broker, tmp_path / "first", prefix)
    survivor = member(broker, tmp_path / "survivor", prefix)
    survivor.extra_env["DEVREG_BATCH_SIZE"] = "1"
    workers = [first, survivor]
    await asyncio.gather(*(w.start() for w in workers))
    yield workers
    await asyncio.gather(*(w.stop() for w in workers))


def on_partitions(partitions: list[int], count: int) -> list[str]:
    ownership = Ownership("http://unused", PARTITIONS)
    found = (f"gate-{uuid.uuid4().hex[:8]}" for _ in range(100_000))
    return [d for d in found if ownership.partition_of(APP, d) in partitions][:count]


async def post(worker: WorkerProcess, device: str, token: str) -> None:
    url = worker.url("messaging/registrations")
    status, body = await call("POST", url, json=registration(device, deviceToken=token))
    assert status == 200, body


async def test_given_a_partition_handed_over_then_5902_until_caught_up_then_the_latest(
    pair: list[WorkerProcess], broker: EmbeddedBroker
) -> None:
    first, survivor = pair
    owners = await wait_for(lambda: group_formed(pair), 30, "the group to form")
    moving = owners[first.base_url]  # the partitions the survivor will be handed
    device, *after = on_partitions(moving, 21)

    # Given a device on one of the first worker's partitions, registered, then buried under
    # thousands of events, then registered again with a new token, then followed by single
    # registrations (so the partition's last record batch holds one record: the end the
    # broker reports at the hand-over is exact, docs/design.md §10)
    await post(first, device, "token-1")
    await publish_registrations(broker.bootstrap, f"{first.prefix}.commands", range(FILLER))
    await wait_for(lambda: counted(first), 60, f"{FILLER} filler devices")
    await post(first, device, "token-2")
    for other in after:
        await post(first, other, f"filler-{other}")  # one device per token: its own

    # When the first worker dies, and the survivor is asked for the device all along
    await first.kill()
    url = survivor.url(f"messaging/registrations/{device}")
    answers: list[tuple[int, Any]] = []

    async def served() -> bool:
        answers.append(await call("GET", url))
        return answers[-1][0] == 200

    await wait_for(served, 90, "the survivor to serve the device")

    # Then it answered 5902 while the partition moved, and while it caught up, and then the
    # latest registration: never the stale token, never "unknown device"
    statuses = {(status, body.get("code")) for status, body in answers[:-1]}
    assert statuses <= {(503, 5902)}, answers
    gated = [body["message"] for _, body in answers[:-1] if CATCHING_UP in body["message"]]
    assert gated, f"never asked while catching up: {[b['message'] for _, b in answers[:5]]}"
    body = answers[-1][1]
    assert body[0]["deviceToken"] == "token-2", answers[-3:]
    print(f"{len(gated)} answers 5902 while catching up, of {len(answers)}")


async def counted(worker: WorkerProcess) -> bool:
    return (await channel_counts(worker)).get("all", 0) >= FILLER
