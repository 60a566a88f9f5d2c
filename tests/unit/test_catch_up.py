"""Readiness waits for the stores to reach the log's start-up end on the partitions owned."""

from __future__ import annotations

from services.catch_up import CatchUp

EVENTS = "devreg.events"


def test_given_no_partition_owned_yet_then_not_caught_up_and_nothing_is_latched() -> None:
    # Given a log whose partitions 0 and 1 end at 10, and stores that applied none of it
    positions: dict[tuple[str, int], int] = {}
    catch_up = CatchUp({(EVENTS, 0): 10, (EVENTS, 1): 10}, lambda: positions)

    # When readiness is asked before the group assigned anything (owned: none yet)
    assert not catch_up.reached([])

    # Then once partition 0 is assigned, it is caught up only when its stores are
    assert not catch_up.reached([0])
    positions[(EVENTS, 0)] = 10
    assert catch_up.reached([0])
