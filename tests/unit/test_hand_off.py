"""Own commands decided at Kafka's acknowledgement (services/stream/hand_off.py): only in log
order, only while this worker holds the partition, and the commands partitions' read-back
paused and resumed around them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from projections.positions import Record
from services.metrics import Metrics
from services.stream.hand_off import HandOff
from services.stream.processor import Pick
from services.stream.read_back import ReadBack
from tests.unit.test_read_back import FakeReader

TOPIC = "t.commands"


class FakeProcessor:
    """Decides whatever it is given that follows its next offset, one caller at a time,
    as services/stream/processor.py does; remembers what it decided, in order."""

    def __init__(self, next_offsets: dict[int, int]):
        self.next_offsets = dict(next_offsets)
        self.decided: list[tuple[int, int, str]] = []  # (partition, offset, by whom)
        self.picked: list[int] = []  # how many records each hand-off batch held
        self.turn = asyncio.Lock()

    def next_offset(self, partition: int) -> int:
        return self.next_offsets.get(partition, 0)

    def _decide(self, records: Sequence[Record], by: str) -> None:
        for r in records:
            if r.offset >= self.next_offset(r.partition):
                assert r.offset == self.next_offset(r.partition), "a record past a gap"
                self.decided.append((r.partition, r.offset, by))
                self.next_offsets[r.partition] = r.offset + 1

    async def handle(self, records: Sequence[Record]) -> None:
        async with self.turn:
            self._decide(records, "log")

    async def handle_picked(self, pick: Pick) -> None:
        async with self.turn:
            records = pick()
            self.picked.append(len(records))
            self._decide(records, "hand-off")

    async def turn_over(self) -> None:
        async with self.turn:
            pass

    def forget_prepared(self) -> None:
        self.forgotten = True


def record(partition: int, offset: int) -> Record:
    return Record(TOPIC, partition, offset, 0, b"k", b"v")


class Rig:
    def __init__(self) -> None:
        self.processor = FakeProcessor({0: 10, 1: 20})
        self.reader = FakeReader()
        self.metrics = Metrics()
        back = ReadBack(
            self.reader, self.processor.next_offset, self.metrics, 60.0, what="commands"
        )
        self.hand_off = HandOff(self.processor, back, self.metrics, batch_size=100)

    async def settled(self) -> None:
        """Until the hand-off has taken everything offered (it runs as a task)."""
        for _ in range(20):
            await asyncio.sleep(0)
        await self.processor.turn_over()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    rig = Rig()
    task = asyncio.ensure_future(rig.hand_off.run())
    yield rig
    task.cancel()


async def test_given_offers_that_continue_the_next_offset_then_decided_at_once(rig: Rig) -> None:
    rig.hand_off.assigned({0, 1})

    rig.hand_off.offer_all([record(0, 10), record(1, 20), record(0, 11)])
    await rig.settled()

    assert rig.processor.decided == [(0, 10, "hand-off"), (0, 11, "hand-off"), (1, 20, "hand-off")]
    assert rig.metrics.value("devreg_commands_handed_off_total") == 3


async def test_given_weighed_offers_then_each_batch_holds_up_to_batch_size_devices(
    rig: Rig,
) -> None:
    # Given expiry commands of 60, 60, 30 and 200 devices (the batch size is 100 devices)
    rig.hand_off.assigned({0, 1})

    # When offered together
    weights = [60, 60, 30, 200]
    rig.hand_off.offer_weighed([(record(0, 10 + n), w) for n, w in enumerate(weights)])
    await rig.settled()

    # Then the processor gets them in batches bounded by devices (one command at least)
    assert rig.processor.picked == [1, 2, 1]
    assert [offset for _, offset, _ in rig.processor.decided] == [10, 11, 12, 13]


async def test_given_a_gap_then_the_rest_is_left_to_the_log_which_reads_again(rig: Rig) -> None:
    # Given partition 0 paused: its reading brought only commands decided already
    rig.hand_off.assigned({0, 1})
    await rig.hand_off.from_log([record(0, 8), record(0, 9)])
    assert rig.reader.paused == {0}

    # When own commands at 11 and 12 are offered, and another producer's is at 10
    rig.hand_off.offer_all([record(0, 11), record(0, 12)])
    await rig.settled()

    # Then neither is decided out of order: the partition is read again from offset 10
    assert rig.processor.decided == []
    assert rig.reader.seeks == [(0, 10)]
    assert rig.reader.paused == set()
    assert rig.metrics.value("devreg_commands_left_to_log_total", reason="gap") == 2

    # And the log brings 10, 11, 12, decided in order
    await rig.hand_off.from_log([record(0, 10), record(0, 11), record(0, 12)])
    assert rig.processor.decided == [(0, 10, "log"), (0, 11, "log"), (0, 12, "log")]


async def test_given_offers_the_log_decided_first_then_skipped(rig: Rig) -> None:
    rig.hand_off.assigned({0})
    await rig.hand_off.from_log([record(0, 10), record(0, 11)])

    rig.hand_off.offer_all([record(0, 10), record(0, 11), record(0, 12)])
    await rig.settled()

    assert [d[1:] for d in rig.processor.decided] == [(10, "log"), (11, "log"), (12, "hand-off")]
    assert rig.reader.paused == set()  # that batch held new commands


async def test_given_a_partition_not_held_then_nothing_of_it_is_decided_here(rig: Rig) -> None:
    # Before the first assignment, and for a partition another worker holds
    rig.hand_off.offer(record(0, 10))
    rig.hand_off.assigned({1})
    rig.hand_off.offer(record(0, 10))
    await rig.settled()

    assert rig.processor.decided == []
    assert rig.metrics.value("devreg_commands_left_to_log_total", reason="fenced") == 2


async def test_given_offers_queued_when_a_rebalance_revokes_then_none_is_decided(
    rig: Rig,
) -> None:
    # Given offers queued while the processor is busy with the log's batch
    rig.hand_off.assigned({0, 1})
    async with rig.processor.turn:
        rig.hand_off.offer_all([record(0, 10), record(1, 20)])
        await asyncio.sleep(0)  # the hand-off has taken them and waits for its turn

        # When the partitions are revoked (and, here, handed straight back)
        revoked = asyncio.ensure_future(rig.hand_off.revoked())
        await asyncio.sleep(0)
        rig.hand_off.assigned({0, 1})
    await revoked
    await rig.settled()

    # Then nothing offered before the fence is decided by the hand-off: the log has them
    assert rig.processor.decided == []
    assert rig.metrics.value("devreg_commands_left_to_log_total", reason="fenced") == 2

    # And offers after the assignment are decided again
    rig.hand_off.offer(record(0, 10))
    await rig.settled()
    assert rig.processor.decided == [(0, 10, "hand-off")]


async def test_given_a_rebalance_then_paused_partitions_are_forgotten(rig: Rig) -> None:
    rig.hand_off.assigned({0})
    await rig.hand_off.from_log([record(0, 9)])
    assert rig.reader.paused == {0}

    rig.hand_off.assigned({0})  # the consumer's new partition states are not paused

    await rig.hand_off.from_log([record(0, 9)])
    assert rig.metrics.value("devreg_commands_read_back_pauses_total") == 2


async def test_given_the_hand_off_off_then_every_command_comes_from_the_log() -> None:
    processor, reader, metrics = FakeProcessor({0: 10}), FakeReader(), Metrics()
    back = ReadBack(reader, processor.next_offset, metrics, 0, what="commands")
    hand_off = HandOff(processor, back, metrics, batch_size=100, enabled=False)
    hand_off.assigned({0})

    hand_off.offer(record(0, 10))
    await hand_off.from_log([record(0, 9)])

    assert processor.decided == []
    assert reader.paused == set()
