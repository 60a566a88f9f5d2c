"""The scheduler's commands held for their instant (services/stream/expiry_ahead.py)."""

from __future__ import annotations

from collections.abc import Sequence

from events import DueExpiry, ExpireRegistrations, encode
from projections.store import DueExpiration
from services.stream.expiry_ahead import Ahead

INSTANT = 1_800_000_000_000


async def prepare(commands: Sequence[tuple[int, ExpireRegistrations]]) -> int:
    return len(commands)


def command(device: str) -> ExpireRegistrations:
    due = (DueExpiry(device_id=device, expiration=INSTANT, version=1),)
    return ExpireRegistrations(command_id=device, app_id="app", issued_at=INSTANT, devices=due)


def row(device: str) -> DueExpiration:
    return DueExpiration(INSTANT, "app", device, 1)


async def test_given_a_partition_taken_away_then_its_held_commands_are_not_sent() -> None:
    # Given commands held for one instant on partitions 0 and 1, filling the budget
    ahead = Ahead(30_000, 2, prepare)
    ahead.hold([(0, command("d0")), (1, command("d1"))])
    assert not ahead.room()

    # When the instant comes and the worker owns only partition 1 (a rebalance)
    ready = ahead.due(INSTANT, frozenset({1}))
    ahead.settle(INSTANT)

    # Then only partition 1's is sent, with its encoding, and only its row is covered; the
    # budget is free again
    assert ready == [(command("d1"), encode(command("d1")))]
    assert ahead.covers(row("d1"))
    assert not ahead.covers(row("d0"))
    assert ahead.room()
    assert not ahead.holds(row("d0"))
    assert not ahead.holds(row("d1"))


async def test_given_nothing_due_yet_then_nothing_is_sent() -> None:
    ahead = Ahead(30_000, 10, prepare)
    ahead.hold([(0, command("d0"))])
    assert ahead.due(INSTANT - 1) == []
    assert ahead.holds(row("d0"))
    assert ahead.due(INSTANT) == [(command("d0"), encode(command("d0")))]


async def test_given_commands_handed_out_then_their_rows_are_covered_only_once_settled() -> None:
    # Given a command handed out at its instant: nothing per device is done yet
    ahead = Ahead(30_000, 10, prepare)
    ahead.hold([(0, command("d0"))])
    ahead.due(INSTANT)
    assert ahead.holds(row("d0"))
    assert not ahead.covers(row("d0"))

    # When the scheduler settles them, after sending
    ahead.settle(INSTANT)

    # Then the row is covered (once) and no longer held
    assert not ahead.holds(row("d0"))
    assert ahead.covers(row("d0"))
    assert not ahead.covers(row("d0"))
