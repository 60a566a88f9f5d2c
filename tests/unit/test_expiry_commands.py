"""The scheduler's commands of many devices (services/stream/expiry_commands.py):
one per commands partition and app, each device once, ids from what they carry."""

from __future__ import annotations

from projections.store import DueExpiration
from services.stream.expiry_commands import COMMAND_DEVICES, expiry_commands

NOW = 1_800_000_000_000


def partition_of(app_id: str, device_id: str) -> int:
    return int(device_id[-1]) % 2  # the test's own partitioner: odd and even devices


def rows(*specs: tuple[str, str]) -> list[DueExpiration]:
    return [DueExpiration(NOW - 10, app, device, 3) for app, device in specs]


def test_given_due_rows_then_one_command_per_partition_and_app_in_their_order() -> None:
    # Given rows of two apps over two partitions; d1 due on two channels (two rows)
    due = rows(("a", "d1"), ("a", "d2"), ("b", "d3"), ("a", "d1"), ("a", "d4"), ("a", "d5"))

    # When
    commands = expiry_commands(due, NOW + 5, partition_of)

    # Then
    named = [(c.app_id, [d.device_id for d in c.devices]) for c in commands]
    assert named == [("a", ["d1", "d5"]), ("a", ["d2", "d4"]), ("b", ["d3"])]
    assert all(c.issued_at == NOW + 5 for c in commands)
    assert all(
        partition_of(c.app_id, c.devices[0].device_id) == int(c.command_id[8]) for c in commands
    )
    assert commands[0].devices[0].version == 3


def test_given_the_same_rows_later_then_the_same_ids_and_other_rows_other_ids() -> None:
    due = rows(("a", "d1"), ("a", "d3"))

    first = expiry_commands(due, NOW, partition_of)
    again = expiry_commands(due, NOW + 60_000, partition_of)
    other = expiry_commands(rows(("a", "d3")), NOW, partition_of)

    assert [c.command_id for c in again] == [c.command_id for c in first]
    assert other[0].command_id != first[0].command_id


def test_given_more_devices_than_a_command_holds_then_split() -> None:
    due = rows(*(("a", f"d{2 * i}") for i in range(COMMAND_DEVICES + 1)))

    commands = expiry_commands(due, NOW, partition_of)

    assert [len(c.devices) for c in commands] == [COMMAND_DEVICES, 1]
    assert len({c.command_id for c in commands}) == 2


def test_given_rows_with_their_partition_then_grouped_by_it_without_murmur2() -> None:
    # Given rows that carry their partition (as the projection's due rows do)
    due = [DueExpiration(NOW - 10, "a", d, 3, partition=p) for d, p in (("d1", 1), ("d2", 0))]

    def no_partitioner(app_id: str, device_id: str) -> int:
        raise AssertionError("the partition was known")

    # When
    commands = expiry_commands(due, NOW, no_partitioner)

    # Then
    assert [(c.command_id[:9], c.devices[0].device_id) for c in commands] == [
        ("expire/p1", "d1"),
        ("expire/p0", "d2"),
    ]


def test_given_rows_not_due_yet_then_one_command_per_expiration_issued_at_it() -> None:
    # Given rows of one app and partition falling due at two instants (made ahead: no clock)
    due = [DueExpiration(NOW + 1000, "a", "d2", 1), DueExpiration(NOW + 1000, "a", "d4", 1)]
    due += [DueExpiration(NOW + 2000, "a", "d6", 1)]

    # When
    commands = expiry_commands(due, None, partition_of)

    # Then each instant has its command, issued at it (decided at it: docs/design.md §7)
    made = [(c.issued_at, [d.device_id for d in c.devices]) for c in commands]
    assert made == [(NOW + 1000, ["d2", "d4"]), (NOW + 2000, ["d6"])]
