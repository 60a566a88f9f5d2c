"""faust's consumer delivering a message without a race when the delivery need not wait
(services/kafka/faust_delivery.py)."""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.transport.consumer import Consumer as FaustConsumer

from services.kafka import faust_delivery


@pytest.fixture
async def consumer(tmp_path: Path) -> AsyncIterator[Any]:
    # Built inside the running loop (faust binds its services to the loop current then)
    app = faust.App("delivery-test", broker="kafka://127.0.0.1:9", datadir=str(tmp_path))
    faust_delivery.install(app)
    consumer: Any = app.consumer  # built, never started: nothing connects
    yield consumer
    consumer._thread.thread_loop.close()  # the loop its fetch thread would have run


def test_the_fetch_loop_still_delivers_through_wait_first() -> None:
    # Given faust's fetch loop, when it delivers a message, then it calls wait_first with the
    # delivery first: the call the fast path replaces (a faust upgrade that changes it fails here).
    source = inspect.getsource(FaustConsumer._drain_messages)
    call = r"await self\.wait_first\(\s*callback\(message\), self\.suspend_flow\.wait\(\)\s*\)"
    assert re.search(call, source)


def test_an_installed_app_builds_the_delivering_consumer(consumer: Any) -> None:
    assert isinstance(consumer, faust_delivery.DeliveringConsumer)


async def test_given_a_delivery_that_need_not_wait_then_it_runs_in_the_loop_task(
    consumer: Any,
) -> None:
    ran_in: list[asyncio.Task[Any] | None] = []

    async def deliver(message: str) -> str:
        ran_in.append(asyncio.current_task())
        return message.upper()

    suspended = asyncio.Event()
    result = await consumer.wait_first(deliver("m"), suspended.wait())
    # faust's race would run it in a task of its own (and three more beside it)
    assert ran_in == [asyncio.current_task()]
    assert (result.done, result.results, result.stopped) == ([result.done[0]], ["M"], False)


async def test_given_a_delivery_that_waits_then_it_completes_in_the_race(consumer: Any) -> None:
    room = asyncio.get_running_loop().create_future()

    async def deliver() -> str:
        return str(await room)  # a full stream buffer: waits for room

    suspended = asyncio.Event()
    race = asyncio.ensure_future(consumer.wait_first(deliver(), suspended.wait()))
    await asyncio.sleep(0)
    assert not race.done()
    room.set_result("delivered")
    result = await asyncio.wait_for(race, 5)
    assert result.results == ["delivered"]
    assert not result.stopped


async def test_given_a_waiting_delivery_when_the_flow_is_suspended_then_it_is_cancelled(
    consumer: Any,
) -> None:
    cancelled = asyncio.Event()

    async def deliver() -> None:
        try:
            await asyncio.get_running_loop().create_future()  # never gets room
        except asyncio.CancelledError:
            cancelled.set()
            raise

    suspended = asyncio.Event()
    race = asyncio.ensure_future(consumer.wait_first(deliver(), suspended.wait()))
    await asyncio.sleep(0)
    suspended.set()  # a rebalance suspends the flow
    result = await asyncio.wait_for(race, 5)
    assert not result.stopped
    assert len(result.done) == 1  # the suspension won
    await asyncio.wait_for(cancelled.wait(), 5)  # and the delivery was interrupted


async def test_a_delivery_that_raises_at_once_raises_to_the_fetch_loop(consumer: Any) -> None:
    async def deliver() -> None:
        raise ValueError("undecodable")

    with pytest.raises(ValueError, match="undecodable"):
        await consumer.wait_first(deliver(), asyncio.Event().wait())
