"""Expiry decided ahead of its instant (docs/design.md §7): the scheduler hands the processor
what falls due within DEVREG_EXPIRY_LEAD_MS, the processor decides it then, and uses that
decision when the command arrives at the instant, unless a device of it changed meanwhile."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events import AnyEvent, RegistrationExpired
from services.log.broker import EmbeddedBroker
from tests.integration.test_expiry import get_channels, register
from tests.support import WorkerProcess, equals, metric, now_ms, wait_for
from tests.topics import read_events

DEVICES = 12
PREPARED = "devreg_expiry_prepared_total"
HELD = "devreg_expiry_bursts_held_total"


@pytest.fixture
async def worker(broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[WorkerProcess]:
    process = WorkerProcess(tmp_path / "data", broker.bootstrap)
    await process.start()
    yield process
    await process.stop()


def expired(events: list[AnyEvent]) -> dict[str, RegistrationExpired]:
    return {e.device_id: e for e in events if isinstance(e, RegistrationExpired)}


async def test_given_expiries_within_the_lead_then_decided_ahead_and_used_at_the_instant(
    worker: WorkerProcess,
) -> None:
    # Given devices whose registrations expire in 5 s, well within the lead (30 s by default)
    expiration = now_ms() + 5000
    devices = [f"ahead-{i}" for i in range(DEVICES)]
    for device in devices:
        await register(worker, device, channels=["news"], expiration=expiration)

    # When the scheduler has handed them to the processor, ahead of the instant
    async def kept() -> bool:
        return await metric(worker, PREPARED, result="kept") >= 1

    await wait_for(kept, 4, "the expiries to be decided ahead")
    assert now_ms() < expiration  # (the test is about before the instant)

    # And one device registers again meanwhile, with a later expiration
    await register(worker, devices[0], channels=["news"], expiration=expiration + 600_000)

    # Then at the instant every other device expires, exactly at its expiration
    topic = f"{worker.prefix}.events"
    events = await read_events(
        worker.bootstrap or "", topic, lambda e: len(expired(e)) >= DEVICES - 1
    )
    found = expired(events)
    assert sorted(found) == sorted(devices[1:])
    assert {e.occurred_at for e in found.values()} == {expiration}  # issued at the instant
    assert await get_channels(worker, devices[0]) == ["news"]
    await wait_for(
        lambda: equals(get_channels(worker, devices[1]), 5000), 10, "the expiry to be applied"
    )

    # And the decisions made ahead were used, except for the command naming the device that
    # registered again: it was dropped, and decided afresh at the instant
    assert await metric(worker, PREPARED, result="used") >= 1
    assert await metric(worker, PREPARED, result="dropped") == 1

    # And the burst's commits were held until it was sent (services/stream/commit_hold.py):
    # the hold ended once nothing kept was due, or at the command decided afresh
    held = [await metric(worker, HELD, ended=why) for why in ("sent", "afresh", "bound")]
    assert sum(held) >= 1, held
