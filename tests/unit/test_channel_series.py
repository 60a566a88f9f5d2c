"""A channel's devices over time (projections/channel_series.py) count, at every instant,
exactly the devices the as-of route would have shown on the channel then."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from events import ChannelCreated, DeviceEvent, empty_state, evolve
from projections.channel_series import count_at, instants, intervals
from tests.unit.domain import DAY, HOUR, NOW, Registry, register, unregister
from tests.unit.test_fold_properties import CHANNELS, MINUTE, Step, steps
from tests.unit.test_two_folds import _decided_log


def as_of_on(events: list[DeviceEvent], channel: str, instant: int) -> bool:
    """The as-of route's answer, written out: the events up to the first one after the
    instant, folded, then the channel's expiration checked at the instant."""
    state = empty_state(events[0].app_id, events[0].device_id)
    for event in events:
        if event.occurred_at > instant:
            break
        state = evolve(state, event)
    return channel in state.active_channels(instant)


def test_given_a_device_joining_and_leaving_then_counted_only_between() -> None:
    registry = Registry()
    joined = registry.accepted(register(channels=("news",)), NOW)
    left = registry.accepted(unregister("unreg-1"), NOW + HOUR)
    device_events = [e for e in (*joined, *left) if not isinstance(e, ChannelCreated)]
    moments = [NOW - 1, NOW, NOW + HOUR - 1, NOW + HOUR, NOW + DAY]

    assert count_at(intervals(device_events, "app-1", "news"), moments) == [0, 1, 1, 0, 0]
    assert count_at(intervals(device_events, "app-1", "sports"), moments) == [0] * 5


def test_given_an_expiration_then_not_counted_from_it_even_before_the_expiry_event() -> None:
    registry = Registry()
    events = registry.accepted(register(channels=("news",), expiration=NOW + HOUR), NOW)
    device_events = [e for e in events if not isinstance(e, ChannelCreated)]

    moments = [NOW, NOW + HOUR - 1, NOW + HOUR]
    assert count_at(intervals(device_events, "app-1", "news"), moments) == [1, 1, 0]


def test_given_an_event_older_than_the_one_before_then_it_counts_from_the_later_time() -> None:
    # Given a command decided after another but carrying an earlier time (a producer's own
    # issued_at): as-of cuts a history at its first event after the instant
    registry = Registry()
    first = registry.accepted(register(channels=("news",)), NOW)
    second = registry.accepted(register("reg-2", channels=("sports",)), NOW - HOUR)
    device_events = [e for e in (*first, *second) if not isinstance(e, ChannelCreated)]
    assert device_events[1].occurred_at < device_events[0].occurred_at

    # Then the device is on sports from the first event's time, never before it
    moments = [NOW - HOUR, NOW - 1, NOW]
    assert count_at(intervals(device_events, "app-1", "sports"), moments) == [0, 0, 1]
    assert [as_of_on(device_events, "sports", t) for t in moments] == [False, False, True]


def test_given_instants_then_evenly_spread_with_both_ends() -> None:
    assert instants(0, 10, 3) == [0, 5, 10]
    assert instants(100, 101, 2) == [100, 101]


@settings(max_examples=200, deadline=None)
@given(st.lists(steps, min_size=2, max_size=40), st.lists(st.integers(-MINUTE, 200 * MINUTE)))
def test_given_any_history_then_the_series_is_the_as_of_answer_at_every_instant(
    script: list[Step], offsets: list[int]
) -> None:
    # Given a decided history of several devices (registrations, removals, expiries)
    log, _ = _decided_log(script)
    by_device: dict[tuple[str, str], list[DeviceEvent]] = defaultdict(list)
    for event in log:
        if not isinstance(event, ChannelCreated):
            by_device[(event.app_id, event.device_id)].append(event)
    moments = sorted({NOW + o for o in offsets} | {e.occurred_at for e in log})

    for channel in CHANNELS:
        for app_id in ("app-a", "app-b"):
            # When the series is counted from each device's intervals
            counted = [0] * len(moments)
            for (app, _), events in by_device.items():
                if app == app_id:
                    part = count_at(intervals(events, app_id, channel), moments)
                    counted = [a + b for a, b in zip(counted, part, strict=True)]

            # Then each count is the number of devices as-of shows on the channel then
            expected = [
                sum(
                    as_of_on(events, channel, t)
                    for (app, _), events in by_device.items()
                    if app == app_id
                )
                for t in moments
            ]
            assert counted == expected, (channel, app_id)
