"""The expiry scheduler on a real projection file, with a clock the test moves
(services/stream/scheduler.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
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
from services.stream.expiry_ahead import RESCAN_MS, Ahead
from services.stream.scheduler import RESEND_AFTER_S, ExpiryScheduler
from tests.fake_batches import FakeBatch
from tests.support import wait_for

EXPIRATION = 1_800_000_000_000


class Producer:
    """aiokafka's producer as the scheduler uses it: record batches, acknowledged at once."""

    def __init__(self) -> None:
        self.commands: list[AnyCommand] = []
        self.bursts: list[int] = []  # commands sent when a burst was announced

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
    await register(store, partition, "dev", 0)
    return store


async def register(store: ProjectionStore, partition: int, device: str, offset: int) -> None:
    command = RegisterDevice(
        command_id=f"c-{device}",
        app_id="app",
        device_id=device,
        device_token="t",
        os="IOS",
        os_version="17",
        channels=("news",),
        expiration=EXPIRATION,
    )
    decision = decide(empty_state("app", device), set(), command, EXPIRATION - 50_000)
    await store.apply(
        [
            Record("events", partition, offset + i, 0, b"k", encode(e))
            for i, e in enumerate(decision.events)
        ]
    )


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


class Preparer:
    """The processor's `prepare`, as the scheduler calls it: records what it is handed."""

    def __init__(self) -> None:
        self.handed: list[tuple[int, ExpireRegistrations]] = []

    async def __call__(self, commands: Sequence[tuple[int, ExpireRegistrations]]) -> int:
        self.handed += commands
        return len(commands)


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@contextlib.asynccontextmanager
async def looking_ahead(
    projection: ProjectionStore,
) -> AsyncIterator[tuple[ExpiryScheduler, Producer, Preparer, Clock]]:
    """A scheduler looking 30 s ahead, running, its clock 10 s before the expiration."""
    producer, preparer, clock = Producer(), Preparer(), Clock(EXPIRATION - 10_000)
    ahead = Ahead(30_000, 1000, preparer)

    async def bursting() -> None:  # what the processor was told: how much was sent by then
        producer.bursts.append(len(producer.commands))

    scheduler = ExpiryScheduler(
        projection,
        producer,
        "commands",
        Metrics(),
        lambda app, device: 0,
        clock=clock,
        ahead=ahead,
        bursting=bursting,
    )
    running = asyncio.ensure_future(scheduler.run())
    try:
        yield scheduler, producer, preparer, clock
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_given_an_expiration_within_the_lead_then_handed_ahead_and_sent_as_is_at_the_instant(
    projection: ProjectionStore,
) -> None:
    # Given a scheduler that looks 30 s ahead, 10 s before the expiration
    async with looking_ahead(projection) as (scheduler, producer, preparer, clock):
        # When it runs, then the processor is handed the expiry, issued at the expiration,
        # and nothing is sent before the instant
        await wait_for(lambda: bool(preparer.handed), 5, "the expiry handed ahead")
        [(partition, command)] = preparer.handed
        assert (partition, command.issued_at) == (0, EXPIRATION)
        assert [(d.device_id, d.expiration) for d in command.devices] == [("dev", EXPIRATION)]
        assert producer.commands == []

        # And at the instant the very same command is sent, and its row not sent again
        clock.now = EXPIRATION
        scheduler.changed(EXPIRATION)  # (wakes it: its sleep is in real time)
        await wait_for(lambda: bool(producer.commands), 5, "the expiry sent")
        await scheduler.expire_due()
        assert producer.commands == [command]

        # And the processor was told of the burst before it was sent (it holds its commits)
        assert producer.bursts == [0]


async def test_given_a_row_written_before_the_look_ahead_cursor_then_found_by_a_later_look(
    projection: ProjectionStore,
) -> None:
    # Given a scheduler that has looked ahead once (and handed "dev")
    async with looking_ahead(projection) as (scheduler, _, preparer, clock):
        await wait_for(lambda: len(preparer.handed) == 1, 5, "the first look ahead")

        # When a device that sorts before "dev" registers with the same expiration
        await register(projection, 0, "aaa", 10)
        clock.now += RESCAN_MS
        scheduler.changed(EXPIRATION)

        # Then the next look ahead hands it too, and "dev" is not handed twice
        await wait_for(lambda: len(preparer.handed) == 2, 5, "the second look ahead")
        devices = [d.device_id for _, c in preparer.handed for d in c.devices]
        assert devices == ["dev", "aaa"]
