"""One device per token across workers: the older device lives on another worker than the
newer one, and its own single writer records that it was superseded (docs/design.md §2)."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events.identity import partition_key
from services.kafka.partitioner import partition_for
from services.log.broker import EmbeddedBroker
from tests.integration.scale_group import PARTITIONS, group_formed, member
from tests.support import WorkerProcess, admin_headers, call, registration, wait_for


def _on(partitions: list[int], prefix: str) -> str:
    """A fresh device id of app-a whose partition is one of `partitions`."""
    for n in itertools.count():
        candidate = f"{prefix}-{uuid.uuid4().hex[:6]}-{n}"
        if partition_for(partition_key("app-a", candidate), PARTITIONS) in partitions:
            return candidate
    raise AssertionError("unreachable")


@pytest.fixture
async def pair(broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[list[WorkerProcess]]:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    workers = [member(broker, tmp_path / f"w{n}", prefix) for n in range(2)]
    yield workers
    await asyncio.gather(*(w.stop() for w in workers))


async def test_given_two_workers_then_a_device_on_the_other_one_is_superseded(
    pair: list[WorkerProcess],
) -> None:
    # Given two workers, each owning half the partitions
    await asyncio.gather(*(w.start() for w in pair))
    owners = await wait_for(lambda: group_formed(pair), 30, "the group to form")
    first, second = (owners[w.base_url] for w in pair)
    older, newer = _on(first, "older"), _on(second, "newer")
    token = f"shared-{uuid.uuid4().hex}"

    # When the older device registers a token through the first worker, and a device owned by
    # the second worker registers the same token through it
    for worker, device in ((pair[0], older), (pair[1], newer)):
        url = worker.url("messaging/registrations")
        status, body = await call("POST", url, registration(device, deviceToken=token))
        assert status == 200, body

    # Then the older device (on the first worker) is superseded, naming the newer device,
    # as read through either worker
    async def superseded() -> bool:
        status, _ = await call("GET", pair[1].url(f"messaging/registrations/{older}"))
        return status == 400

    await wait_for(superseded, 30, "the older device to be superseded")
    history = pair[1].admin_url(f"messaging/registrations/{older}/history")
    status, body = await call("GET", history, headers=admin_headers())
    assert status == 200, body
    last = body["events"][-1]
    assert (last["type"], last["by_device_id"]) == ("device-superseded/1", newer)
    status, body = await call("GET", pair[0].url(f"messaging/registrations/{newer}"))
    assert status == 200, body
    assert body[0]["deviceToken"] == token
