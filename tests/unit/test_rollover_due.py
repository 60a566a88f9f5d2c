"""When a renewal of the embedded broker is due (services/log/rollover.py `Rollover.due`):
on a real kept log, with the stores' positions as the worker would report them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import pytest

from projections.positions import Record
from services.config import Settings, load_settings
from services.kafka.clients import KafkaAccess
from services.log.journal import Journal
from services.log.rollover import FORCED_AFTER, Rollover
from services.log.segments import SegmentLog
from services.metrics import Metrics

TP = tuple[str, int]
KAFKA = KafkaAccess(bootstrap="127.0.0.1:1")  # never reached: nothing here reads the broker


def _settings() -> Settings:
    return load_settings(
        {
            "DEVREG_EMBEDDED_ROLLOVER": "100",
            "DEVREG_EMBEDDED_TAIL": "10",
            "DEVREG_EMBEDDED_BACKLOG": "500",
        }
    )


def _records(topic: str, partition: int, start: int, count: int) -> Iterator[Record]:
    for offset in range(start, start + count):
        yield Record(topic, partition, offset, 0, b"k", b"v", ())


class _Stack:
    def __init__(self, tmp_path: Path):
        self.settings = _settings()
        self.segments = SegmentLog(tmp_path / "log")
        self.journal = Journal(self.segments, KAFKA)
        self.positions: dict[TP, int] = {}
        self.rollover = Rollover(self.settings, KAFKA, self.journal, _never, self._where, Metrics())

    def _where(self) -> Mapping[TP, int]:
        return self.positions

    async def keep(
        self, topic: str, partition: int, count: int, batches: int | None = None
    ) -> None:
        """Records devreg wrote itself: each a batch of its own, or in `batches` batches."""
        start = self.segments.end(topic, partition)
        sent = {} if batches is None else {(topic, partition): batches}
        await self.journal.keep(list(_records(topic, partition, start, count)), sent)

    def backlog(self, topic: str, partition: int, count: int) -> None:
        """Records someone published in bulk, in the kept log (as the journal fills a gap
        with them) but not counted as devreg's own writes."""
        start = self.segments.end(topic, partition)
        self.segments.append(_records(topic, partition, start, count))


@contextlib.asynccontextmanager
async def _never() -> AsyncIterator[None]:
    raise AssertionError("due() must not hold the worker still")
    yield  # an async generator: what asynccontextmanager takes


@pytest.fixture
def stack(tmp_path: Path) -> _Stack:
    return _Stack(tmp_path)


async def test_given_fewer_records_than_the_rollover_then_no_renewal_is_due(stack: _Stack) -> None:
    await stack.keep(stack.settings.events_topic, 0, 99)
    assert not stack.rollover.due()


async def test_given_the_stores_caught_up_then_a_renewal_is_due_at_the_rollover(
    stack: _Stack,
) -> None:
    s = stack.settings
    await stack.keep(s.events_topic, 0, 100)
    stack.positions[(s.events_topic, 0)] = 100
    assert stack.rollover.due()


async def test_given_a_backlog_the_stores_still_read_then_the_renewal_waits(
    stack: _Stack,
) -> None:
    # Given 5,000 commands published in bulk, 100 decided, and 100 records kept since
    s = stack.settings
    stack.backlog(s.commands_topic, 0, 5000)
    await stack.keep(s.commands_topic, 0, 100)
    stack.positions[(s.commands_topic, 0)] = 100
    # Then a renewal, which would copy ~5,000 of them for the processor to read, is not due
    assert not stack.rollover.due()
    # When the processor has caught up to within DEVREG_EMBEDDED_BACKLOG (500) of the tail
    stack.positions[(s.commands_topic, 0)] = 5100 - 10 - 500
    # Then it is
    assert stack.rollover.due()


async def test_given_a_backlog_that_lasts_then_records_written_meanwhile_force_a_renewal(
    stack: _Stack,
) -> None:
    # Given a backlog the stores are far behind
    s = stack.settings
    stack.backlog(s.commands_topic, 0, 5000)
    stack.positions[(s.commands_topic, 0)] = 0
    # When devreg writes records of its own in large batches, many more than the bound
    await stack.keep(s.events_topic, 1, FORCED_AFTER * 100 * 10, batches=10)
    # Then the renewal still waits: they are few objects in the broker
    assert not stack.rollover.due()
    # When it writes records each a batch of its own, up to the bound
    await stack.keep(s.events_topic, 2, FORCED_AFTER * 100 - 1)
    assert not stack.rollover.due()
    await stack.keep(s.events_topic, 2, 1)
    # Then the renewal no longer waits: the broker's objects stay bounded
    assert stack.rollover.due()
