"""The expiry scheduler on a real projection file, with a clock the test moves
(services/stream/scheduler.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from events import (
    AnyCommand,
    ExpireRegistrations,
    RegisterDevice,
    decide,
    decode_command,
    empty_state,
    encode,
)
from projections.positions import Record
from projections.store import ProjectionStore
from services.metrics import Metrics
from services.stream.scheduler import RESEND_AFTER_S, ExpiryScheduler
from tests.fake_batches import FakeBatch
from tests.support import wait_for

EXPIRATION = 1_800_000_000_000


class Producer:
    """aiokafka's producer as the scheduler uses it: record batches, acknowledged at once."""

    def __init__(self) -> None:
        self.commands: list[AnyCommand] = []

    def create_batch(self) -> FakeBatch:
        return FakeBatch()

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> Any:
        self.commands += [decode_command(v) for _, v in batch.records]  # type: ignore[misc]
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(SimpleNamespace(partition=partition, offset=0, timestamp=-1))
        return done


async def registered(path: Path, partition: int) -> ProjectionStore:
    """A projection holding one device, registered on "news" until EXPIRATION, its events
    read from `partition` of the events topic."""
    store = await ProjectionStore.open(path)
    command = RegisterDevice(
        command_id="c1",
        app_id="app",
        device_id="dev",
        device_token="t",
        os="IOS",
        os_version="17",
        channels=("news",),
        expiration=EXPIRATION,
    )
    decision = decide(empty_state("app", "dev"), set(), command, EXPIRATION - 5000)
    await store.apply(
        [Record("events", partition, i, 0, b"k", encode(e)) for i, e in enumerate(decision.events)]
    )
    return store


@pytest.fixture
async def projection(tmp_path: Path) -> AsyncIterator[ProjectionStore]:
    store = await registered(tmp_path / "projection.sqlite", 0)
    yield store
    await store.close()


def ticking(readings: Iterator[int]) -> Any:
    return lambda: next(readings)


async def test_given_the_clock_passes_the_expiration_between_two_readings_then_it_expires(
    projection: ProjectionStore,
) -> None:
    # Given a clock 1 ms short of the expiration when the scheduler asks what is due, and at
    # the expiration when it next reads it (a timer that fires a millisecond early, say)
    readings = iter([EXPIRATION - 1, EXPIRATION - 1] + [EXPIRATION] * 1000)
    producer = Producer()
    scheduler = ExpiryScheduler(
        projection,
        producer,
        "commands",
        Metrics(),
        lambda app, device: 0,
        clock=ticking(readings),
    )
    # When it runs, then it still sends the expiry (it once slept for good: the expiration
    # was no longer "next" and had not been "due")
    running = asyncio.ensure_future(scheduler.run())
    try:
        await wait_for(lambda: bool(producer.commands), 5, "the expiry")
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    [sent] = producer.commands
    assert isinstance(sent, ExpireRegistrations)
    assert [(d.device_id, d.expiration) for d in sent.devices] == [("dev", EXPIRATION)]


async def test_given_sent_expiries_the_processor_has_not_decided_then_never_sent_again(
    projection: ProjectionStore,
) -> None:
    # Given an expiry sent, and a processor that has not decided it yet (a backlog draining)
    decided = {0: 0}
    monotonic = [0.0]
    producer = Producer()
    scheduler = ExpiryScheduler(
        projection,
        producer,
        "commands",
        Metrics(),
        lambda app, device: 0,
        clock=lambda: EXPIRATION + 10,
        decided=decided.__getitem__,
        monotonic=lambda: monotonic[0],
    )
    await scheduler.expire_due()
    assert len(producer.commands) == 1

    # When it is still due long past RESEND_AFTER_S, the processor still deciding
    monotonic[0] += 3 * RESEND_AFTER_S
    await scheduler.expire_due()

    # Then it is not sent again (resending a backlog only added to it)
    assert len(producer.commands) == 1

    # When the processor has decided it and it stays due (the projection behind, say): not at
    # once, but RESEND_AFTER_S later, as the same command (one effect: the first outcome)
    decided[0] = 1
    await scheduler.expire_due()
    assert len(producer.commands) == 1
    monotonic[0] += RESEND_AFTER_S + 1
    await scheduler.expire_due()
    first, again = producer.commands
    assert again == first


async def test_given_due_rows_then_each_carries_the_partition_its_events_came_from(
    tmp_path: Path,
) -> None:
    # Given: a device's events read from partition 3 of the events topic
    store = await registered(tmp_path / "other.sqlite", 3)

    # When
    due = await store.due_expirations(EXPIRATION, (0, "", ""), 10)
    await store.close()

    # Then: the scheduler groups it by that partition (its commands partition too)
    assert [(d.device_id, d.partition) for d in due] == [("dev", 3)]
