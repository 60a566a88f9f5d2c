"""The command processor decides batch N+1 while batch N waits for Kafka and its commit, on
real SQLite files; Kafka is a hand-written producer that holds every acknowledgement until
the test releases it (the integration tests run the same code on the real broker)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.processor_rig import APP, Rig, close_rig, open_rig
from tests.support import wait_for


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    rig = await open_rig(tmp_path)
    yield rig
    await close_rig(rig)


async def test_given_a_batch_in_flight_then_the_next_decides_on_top_of_it(rig: Rig) -> None:
    # Given batch 1 (register on news) sent, its acknowledgement held by Kafka
    await rig.processor.handle([rig.command(0, "news")])
    assert rig.decisions.next_offsets == {}  # not committed

    # When batch 2 (register on sport) arrives, and batch 1 is delivered again meanwhile
    second = asyncio.ensure_future(rig.processor.handle([rig.command(1, "sport")]))
    await wait_for(lambda: len(rig.registrations()) == 2, 5, "batch 2 to be sent")
    # (ignored: were it decided again, this would wait for batch 2, held by Kafka)
    await asyncio.wait_for(rig.processor.handle([rig.command(0, "news")]), 5)

    # Then batch 2 was decided as version 2 on top of batch 1, and the redelivery ignored
    first_event, second_event = rig.registrations()
    assert (first_event.version, second_event.version) == (1, 2)
    assert second_event.prev_hash == first_event.hash
    assert not second.done()  # it waits for batch 1 to finish before returning

    # And once Kafka acknowledges, both commit in order and the projection holds version 2
    rig.producer.release()
    await second
    await rig.processor.drain()
    assert rig.failures == []
    assert rig.decisions.next_offsets == {(rig.settings.commands_topic, 0): 2}
    device = await rig.projection.get_device(APP, "dev", 0)
    assert device is not None
    assert (device.version, sorted(device.channels)) == (2, ["news", "sport"])
