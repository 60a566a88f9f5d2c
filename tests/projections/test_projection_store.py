"""The projection on a real SQLite file: the fold, positions, duplicates, gaps, expiry filter."""

from __future__ import annotations

from pathlib import Path

import pytest

from events import (
    EVENT_TYPES,
    RegisterDevice,
    UnregisterDevice,
    decide,
    empty_state,
    encode,
    evolve,
)
from events.identity import seal
from events.model import AnyEvent, ChannelCreated
from projections.fold import CHANNEL_FOLDS, DEVICE_FOLDS, ProjectionError
from projections.positions import Record
from projections.store import ProjectionStore

T0 = 1_800_000_000_000
TOPIC = "devreg.events"


def history() -> list[AnyEvent]:
    """register (news, expiring at T0+1000; sport), re-register sport, unregister news."""
    state, events = empty_state("app", "dev"), []
    commands = [
        RegisterDevice(
            command_id="c1",
            app_id="app",
            device_id="dev",
            device_token="t1",
            os="IOS",
            os_version="17",
            channels=("news",),
            expiration=T0 + 1000,
        ),
        RegisterDevice(
            command_id="c2",
            app_id="app",
            device_id="dev",
            device_token="t2",
            os="IOS",
            os_version="17",
            channels=("sport",),
        ),
        UnregisterDevice(command_id="c3", app_id="app", device_id="dev", channels=("sport",)),
    ]
    known: set[str] = set()
    for i, command in enumerate(commands):
        decision = decide(state, known, command, T0 + i)
        for event in decision.events:
            if isinstance(event, ChannelCreated):
                known.add(event.channel)
            else:
                state = evolve(state, event)
            events.append(event)
    return events


def records(events: list[AnyEvent], first_offset: int = 0) -> list[Record]:
    return [Record(TOPIC, 0, first_offset + i, T0, b"k", encode(e)) for i, e in enumerate(events)]


@pytest.fixture
async def store(tmp_path: Path) -> ProjectionStore:
    opened = await ProjectionStore.open(tmp_path / "projection.sqlite")
    yield opened  # type: ignore[misc]
    await opened.close()


def test_every_event_type_has_exactly_one_projection_handler() -> None:
    handled = set(DEVICE_FOLDS) | set(CHANNEL_FOLDS)
    assert handled == set(EVENT_TYPES)
    assert not set(DEVICE_FOLDS) & set(CHANNEL_FOLDS)


async def test_given_a_history_when_applied_then_rows_and_position_are_stored(
    store: ProjectionStore, tmp_path: Path
) -> None:
    events = history()
    result = await store.apply(records(events))
    assert result.applied == len(events)
    device = await store.get_device("app", "dev", T0)
    assert device is not None
    assert device.device_token == "t2"
    assert set(device.channels) == {"news"}
    # A second connection sees the position: it was committed with the rows.
    reopened = await ProjectionStore.open(tmp_path / "projection.sqlite")
    try:
        assert reopened.next_offsets() == {(TOPIC, 0): len(events)}
    finally:
        await reopened.close()


async def test_given_redelivered_and_reemitted_events_then_they_take_no_effect_twice(
    store: ProjectionStore,
) -> None:
    events = history()
    await store.apply(records(events))
    # Redelivery of the same offsets (below the stored position): skipped before decoding.
    again = await store.apply(records(events))
    assert (again.applied, again.duplicates, again.behind) == (0, 0, len(events))
    # A re-emitted copy at new offsets (a command re-processed after a crash): same versions.
    copies = await store.apply(records(events, first_offset=len(events)))
    assert copies.applied == 2  # the two ChannelCreated: idempotent inserts
    assert copies.duplicates == 3
    device = await store.get_device("app", "dev", T0)
    assert device is not None
    assert device.version == 3


async def test_given_own_events_then_applied_at_once_only_where_they_follow_the_position(
    store: ProjectionStore,
) -> None:
    # Given a projection at offset 2 of partition 0 (two events applied)
    events = history()
    await store.apply(records(events[:2]))
    assert store.next_offsets() == {(TOPIC, 0): 2}

    # When the processor hands over events at offsets 3.. (offset 2 is missing: a gap)
    gap = await store.apply_next(records(events[2:], first_offset=3))

    # Then nothing is applied: the projector will read offset 2 onwards from the log
    assert gap is None
    assert store.next_offsets() == {(TOPIC, 0): 2}

    # And events that continue exactly from the position are applied at once
    following = await store.apply_next(records(events[2:], first_offset=2))
    assert following is not None
    assert following.applied == len(events) - 2
    assert store.next_offsets() == {(TOPIC, 0): len(events)}
    device = await store.get_device("app", "dev", T0)
    assert device is not None
    assert device.version == 3

    # And the same records read back from the log later are below the position: no effect
    again = await store.apply(records(events[2:], first_offset=2))
    assert (again.applied, again.duplicates, again.behind) == (0, 0, len(events) - 2)


async def test_given_a_gap_in_versions_then_the_projection_stops(store: ProjectionStore) -> None:
    events = history()
    without_second_registration = [e for e in events if getattr(e, "version", 0) != 2]
    with pytest.raises(ProjectionError, match="gap or a broken hash chain"):
        await store.apply(records(without_second_registration))
    assert store.next_offsets() == {}  # nothing of the failed batch was committed


async def test_given_a_passed_expiration_then_queries_hide_it_before_the_expiry_event(
    store: ProjectionStore,
) -> None:
    # Given "news" expiring at T0+1000, with no RegistrationExpired event (yet)
    await store.apply(records(history()))
    # Then before the expiration it is shown, at and after it it is not, in every query
    assert await store.get_device("app", "dev", T0 + 999) is not None
    assert await store.get_device("app", "dev", T0 + 1000) is None
    assert len(await store.channel_devices("app", "news", T0 + 999, "", 10, None)) == 1
    assert await store.channel_devices("app", "news", T0 + 1000, "", 10, None) == []
    counts = {c.channel: c.devices for c in await store.channel_counts("app", T0 + 1000)}
    assert counts == {"news": 0, "sport": 0}


def announced(channel: str, at: int) -> ChannelCreated:
    return seal(
        ChannelCreated(
            event_id=f"e-{at}",
            app_id="app",
            version=1,
            occurred_at=at,
            command_id=f"c-{at}",
            prev_hash="",
            channel=channel,
        )
    )


@pytest.mark.parametrize("batches", ["one", "two"])
async def test_given_a_channel_announced_on_two_partitions_then_the_earliest_stands_in_any_order(
    tmp_path: Path, batches: str
) -> None:
    # Given "news" announced by two workers, each on a partition it owned (each worker knew
    # only its own partitions' channels)
    early = Record(TOPIC, 0, 0, T0, b"k0", encode(announced("news", T0 + 1)))
    late = Record(TOPIC, 1, 0, T0, b"k1", encode(announced("news", T0 + 5)))
    created = []
    for name, order in (("late-first", [late, early]), ("early-first", [early, late])):
        # When one projection reads the partitions in one order and another in the other (a
        # live projector and a rebuild of it need not interleave partitions alike)
        store = await ProjectionStore.open(tmp_path / f"{name}.sqlite")
        try:
            for part in [order] if batches == "one" else [[r] for r in order]:
                await store.apply(part)
            created.append(
                [(c.channel, c.createdAt) for c in await store.channel_counts("app", T0)]
            )
        finally:
            await store.close()

    # Then both hold the earliest announcement: rows never depend on the reading order
    assert created == [[("news", T0 + 1)]] * 2


async def test_given_an_event_from_a_newer_writer_then_the_history_keeps_its_log_bytes(
    store: ProjectionStore,
) -> None:
    # Given: the first event as a newer devreg would write it, with a field this one lacks
    events = history()
    at = next(i for i, e in enumerate(events) if not isinstance(e, ChannelCreated))
    newer = encode(events[at])[:-1] + b',"written_by":"devreg 9"}'
    batch = records(events)
    batch[at] = Record(TOPIC, 0, at, T0, b"k", newer)

    # When
    await store.apply(batch)

    # Then: the history holds the bytes of the log, unknown field included, not a re-encoding
    stored = await store.device_history("app", "dev", 0, 10)
    assert stored[0] == newer
    later = events[at + 1 :]
    assert stored[1:] == [encode(e) for e in later if not isinstance(e, ChannelCreated)]
