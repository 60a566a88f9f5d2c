"""Pausing the read-back of a worker's own events, and reading again
(services/stream/read_back.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from services.metrics import Metrics
from services.stream.read_back import MAX_PUT_OFF, ReadBack
from tests.support import wait_for


class FakeReader:
    """faust's consumer, as far as the read-back sees it: which partitions are paused."""

    def __init__(self) -> None:
        self.paused: set[int] = set()
        self.seeks: list[tuple[int, int]] = []

    async def pause(self, partitions: set[int]) -> None:
        await asyncio.sleep(0)  # on faust's consumer thread
        self.paused |= partitions

    async def resume(self, positions: Mapping[int, int]) -> None:
        await asyncio.sleep(0)  # faust's seek goes through its consumer thread
        self.seeks += sorted(positions.items())
        self.paused -= set(positions)


STORED = {0: 10, 1: 20, 2: 30}  # the projection's position per events partition


def read_back(reader: FakeReader, metrics: Metrics, recheck_s: float = 60.0) -> ReadBack:
    return ReadBack(reader, STORED.__getitem__, metrics, recheck_s)


async def test_given_copies_only_then_the_partition_pauses_once() -> None:
    reader, metrics = FakeReader(), Metrics()
    back = read_back(reader, metrics)

    await back.only_copies({0, 1})
    await back.only_copies({1})

    assert reader.paused == {0, 1} == back.paused
    assert metrics.value("devreg_read_back_pauses_total") == 2


async def test_given_a_paused_partition_when_write_through_cannot_apply_then_it_reads() -> None:
    # Given
    reader, metrics = FakeReader(), Metrics()
    back = read_back(reader, metrics)
    await back.only_copies({0, 1})

    # When: write-through met events it could not apply, on a paused and a reading partition
    await back.not_applied({1, 2})

    # Then: only the paused one is resumed, from the projection's position
    assert reader.seeks == [(1, 20)]
    assert reader.paused == {0} == back.paused
    assert metrics.value("devreg_read_back_resumes_total", reason="gap") == 1


async def test_given_paused_partitions_then_the_recheck_reads_them_again() -> None:
    # Given
    reader, metrics = FakeReader(), Metrics()
    back = read_back(reader, metrics, recheck_s=0.05)
    await back.only_copies({0, 2})
    task = asyncio.ensure_future(back.run())
    try:
        # When / Then: within the interval, both read again from the stored positions
        await wait_for(lambda: not reader.paused, 5, "the recheck")
        assert sorted(reader.seeks) == [(0, 10), (2, 30)]
        assert not back.paused
        assert metrics.value("devreg_read_back_resumes_total", reason="recheck") == 2
    finally:
        task.cancel()


async def test_given_no_recheck_interval_then_nothing_is_ever_paused() -> None:
    reader, metrics = FakeReader(), Metrics()
    back = read_back(reader, metrics, recheck_s=0)

    await back.only_copies({0, 1})
    await asyncio.wait_for(back.run(), 1)  # returns at once: no safety net needed

    assert not reader.paused
    assert not back.paused


async def test_given_batches_in_flight_then_the_recheck_is_put_off_a_bounded_number_of_times() -> (
    None
):
    # Given paused partitions, and a processor that always has batches in flight
    reader, metrics = FakeReader(), Metrics()
    back = ReadBack(reader, STORED.__getitem__, metrics, 0.02, in_flight=lambda: True)
    await back.only_copies({0, 2})
    task = asyncio.ensure_future(back.run())
    try:
        # When / Then: the recheck waits MAX_PUT_OFF intervals, then reads them again anyway
        await wait_for(lambda: not reader.paused, 5, "the recheck, put off")
        put_off = metrics.value("devreg_read_back_rechecks_put_off_total")
        assert put_off == MAX_PUT_OFF
        assert metrics.value("devreg_read_back_resumes_total", reason="recheck") == 2
    finally:
        task.cancel()
