"""The audit CLI's pure parts: times, event types, replay filters, offsets, progress."""

from __future__ import annotations

import io

import pytest

from events import ChannelCreated, DeviceUnregistered
from services.audit.commands import _from_offsets
from services.audit.replay import Filter, event_type_tags, parse_time
from services.progress import Progress


def test_given_times_in_each_form_when_parsed_then_ms_since_the_epoch() -> None:
    assert parse_time("1700000000000") == 1_700_000_000_000
    assert parse_time("2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert parse_time("2023-11-14T22:13:20") == 1_700_000_000_000  # UTC unless it says
    assert parse_time("2023-11-14T23:13:20.5+01:00") == 1_700_000_000_500
    with pytest.raises(ValueError, match="neither ISO-8601 nor ms"):
        parse_time("yesterday")


def test_given_tags_or_class_names_when_resolved_then_tags() -> None:
    assert event_type_tags(["DeviceRegistered", "registration-expired/1"]) == {
        "device-registered/1",
        "registration-expired/1",
    }
    with pytest.raises(ValueError, match="unknown event type"):
        event_type_tags(["device-registered/9"])


def test_given_a_channel_filter_then_removals_and_creations_naming_it_match() -> None:
    created = ChannelCreated(
        event_id="e",
        app_id="a",
        version=1,
        occurred_at=5,
        command_id="c",
        prev_hash="",
        channel="news",
    )
    removed = DeviceUnregistered(
        event_id="e",
        app_id="a",
        version=2,
        occurred_at=9,
        command_id="c",
        prev_hash="",
        device_id="d",
        channels=("news", "sports"),
    )
    assert Filter(channel="news").matches(created)
    assert Filter(channel="sports").matches(removed)
    assert not Filter(channel="sports").matches(created)
    assert not Filter(device_id="d").matches(created)  # a channel event has no device
    assert Filter(since=5, until=9).matches(created)
    assert not Filter(since=6).matches(created)
    assert not Filter(types=frozenset({"device-registered/1"})).matches(removed)


def test_given_start_offsets_when_parsed_then_per_partition_or_for_all() -> None:
    assert _from_offsets(["5", "2:7"]) == {None: 5, 2: 7}
    with pytest.raises(ValueError, match="PARTITION:N"):
        _from_offsets(["x:1"])


def test_given_no_terminal_when_progress_finishes_then_one_plain_line() -> None:
    out = io.StringIO()
    progress = Progress("rebuild", total=10, out=out)
    progress.advance(4)
    assert "40%" in progress.line()
    assert "ETA" in progress.line()
    progress.finish()
    assert out.getvalue().startswith("rebuild: 4 events in ")
    assert "\r" not in out.getvalue()
