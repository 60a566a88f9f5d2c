"""Readiness waits for the stores to reach the log's start-up end on the partitions owned."""

from __future__ import annotations

from services.stream.catch_up import CatchUp, Takeover

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


def test_given_a_partition_handed_over_then_gated_until_its_projection_reaches_the_end() -> None:
    # Given a worker whose projection applied partition 0 up to offset 4
    positions: dict[tuple[str, int], int] = {(EVENTS, 0): 4}
    takeover = Takeover(EVENTS, lambda: positions)
    assert takeover.caught_up(0)  # nothing handed over: served

    # When partition 0 is handed to it: gated at once, before its end is known
    assert takeover.assigned([0]) == {0}
    assert not takeover.caught_up(0)
    assert takeover.waiting() == {0}
    # (told again by the seek after the rebalance: nothing new)
    assert takeover.assigned([0]) == set()
    # And once the log's end there is read: 10
    takeover.handed({0: 10})
    assert takeover.waiting() == set()

    # Then it is not served until the projection reaches 10, and then for good
    assert not takeover.caught_up(0)
    positions[(EVENTS, 0)] = 9
    assert not takeover.caught_up(0)
    positions[(EVENTS, 0)] = 10
    assert takeover.caught_up(0)
    assert takeover.caught_up(1)  # never handed over: untouched

    # And a partition taken away again before it caught up is no longer gated here
    assert takeover.assigned([0, 1]) == {1}
    takeover.handed({1: 5})
    assert not takeover.caught_up(1)
    assert takeover.assigned([0]) == set()
    assert takeover.caught_up(1)


def test_given_the_end_cannot_be_read_then_the_partition_is_served_ungated() -> None:
    takeover = Takeover(EVENTS, lambda: {})
    assert takeover.assigned([3]) == {3}
    assert not takeover.caught_up(3)
    takeover.ungated(takeover.waiting())
    assert takeover.caught_up(3)


def test_given_stores_caught_up_then_not_ready_until_the_partitions_keys_are_read() -> None:
    # Given stores that applied the log's start-up end of partitions 0 and 1
    positions = {(EVENTS, 0): 10, (EVENTS, 1): 10}
    read: set[int] = set()
    catch_up = CatchUp({(EVENTS, 0): 10, (EVENTS, 1): 10}, lambda: positions, read.__contains__)

    # When the keyring has read the keys of partition 0 only
    read.add(0)

    # Then the worker is not ready: a new device on partition 1 would wait for its keys
    assert not catch_up.reached([0, 1])
    # and once partition 1's keys are read too, it is, for good
    read.add(1)
    assert catch_up.reached([0, 1])
    read.clear()
    assert catch_up.reached([0, 1])
