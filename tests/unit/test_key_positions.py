"""How far the key store's position may go in the embedded mode (services/keys/applied.py):
never past a tombstone whose key is not deleted yet, whatever was acknowledged behind it."""

from __future__ import annotations

from projections.positions import Position, Record, fingerprint
from services.keys.applied import MAX_AHEAD, AppliedOffsets

TOPIC = "devreg.keys"


def key(partition: int, offset: int, name: str = "k") -> Record:
    return Record(TOPIC, partition, offset, 0, f'["app","{name}","1-a"]'.encode(), b"{}")


def tombstone(partition: int, offset: int, name: str = "k") -> Record:
    return Record(TOPIC, partition, offset, 0, f'["app","{name}","1-a"]'.encode(), None)


def reached(applied: AppliedOffsets, also: list[Record] | None = None) -> dict[int, int]:
    return {p.partition: p.next_offset for p in applied.positions(also or [])}


def read_to(applied: AppliedOffsets, partition: int, next_offset: int) -> None:
    applied.read_to(Position(TOPIC, partition, next_offset, "read"))


def test_given_created_keys_acknowledged_then_the_position_passes_them() -> None:
    # Given partitions read up to offsets 10 and 0
    applied = AppliedOffsets(TOPIC)
    read_to(applied, 0, 10)
    read_to(applied, 1, 0)

    # When keys stored before they were published are acknowledged at 10, 11 and 0
    applied.applied([key(0, 10), key(0, 11), key(1, 0, "j")])

    # Then each position passes them, naming the last one's fingerprint
    [zero, one] = applied.positions()
    assert (zero.next_offset, one.next_offset) == (12, 1)
    assert zero.fingerprint == fingerprint(key(0, 11).key, b"{}")


def test_given_a_tombstone_not_yet_deleted_then_a_creation_after_it_does_not_move_past_it() -> None:
    # Given partition 0 read up to 10, and an erasure whose tombstone Kafka acknowledged at
    # 10 (its key not deleted from the store yet)
    applied = AppliedOffsets(TOPIC)
    read_to(applied, 0, 10)
    erased = [tombstone(0, 10, "gone")]

    # When a creation acknowledged at 11 and 12 is applied
    applied.applied([key(0, 11), key(0, 12)])

    # Then the position stays at the tombstone (a restart reads it again and deletes the key)
    assert reached(applied) == {0: 10}
    # while the erasure's own transaction, deleting the key, may claim past all of them
    assert reached(applied, erased) == {0: 13}
    assert reached(applied) == {0: 10}

    # And once the delete committed and the tombstone is applied, the position passes it
    applied.applied(erased)
    assert reached(applied) == {0: 13}


def test_given_an_offset_never_acknowledged_then_the_position_stays_before_it() -> None:
    # Given a partition read up to 5, whose next record's offset was never reported (a
    # publish that failed halfway)
    applied = AppliedOffsets(TOPIC)
    read_to(applied, 0, 5)

    # When records after it are applied
    applied.applied([key(0, 6), key(0, 7)])

    # Then the position stays at 5; a read that reached past them moves it on
    assert reached(applied) == {0: 5}
    read_to(applied, 0, 7)
    assert reached(applied) == {0: 8}


def test_given_records_applied_before_the_partition_was_read_then_they_count_after() -> None:
    # Given a creation acknowledged while the partition's read is under way (nothing known)
    applied = AppliedOffsets(TOPIC)
    applied.applied([key(0, 20)])
    assert reached(applied) == {}

    # When the read reached 20, then the creation counts; a read that reached less moves
    # nothing back
    read_to(applied, 0, 20)
    assert reached(applied) == {0: 21}
    read_to(applied, 0, 3)
    assert reached(applied) == {0: 21}


def test_given_too_many_offsets_waiting_then_the_partition_stops_for_the_run() -> None:
    # Given a partition whose position cannot advance (offset 0 never reported)
    applied = AppliedOffsets(TOPIC)
    read_to(applied, 0, 0)
    read_to(applied, 1, 0)

    # When more offsets than it holds wait behind it
    applied.applied([key(0, n) for n in range(1, MAX_AHEAD + 2)])

    # Then it is claimed no more this run (the other partition still is)
    applied.applied([key(0, 0), key(1, 0)])
    assert reached(applied) == {1: 1}
