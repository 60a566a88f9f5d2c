"""The hash-chain check of `devreg history`: pure, over hand-built event sequences."""

from __future__ import annotations

import msgspec

from events import AnyEvent, ChannelCreated, DeviceRegistered, DeviceUnregistered
from events.identity import event_id, registration_id, seal
from projections.chain import Position, check_chain


def registered(version: int, prev_hash: str, token: str = "t") -> DeviceRegistered:
    return seal(
        DeviceRegistered(
            event_id=event_id("app", f"c{version}", 0),
            app_id="app",
            version=version,
            occurred_at=1000 * version,
            command_id=f"c{version}",
            prev_hash=prev_hash,
            device_id="dev",
            device_token=token,
            os="IOS",
            os_version="17",
            channels=("news",),
            registration_ids={"news": registration_id("app", "dev", "news")},
        )
    )


def chain(length: int) -> list[AnyEvent]:
    events: list[AnyEvent] = []
    for version in range(1, length + 1):
        events.append(registered(version, events[-1].hash if events else ""))
    return events


def at(events: list[AnyEvent]) -> list[tuple[Position, AnyEvent]]:
    return [(Position(0, offset, offset), event) for offset, event in enumerate(events)]


def test_given_a_sealed_chain_when_checked_then_intact() -> None:
    events = chain(3)
    checked, verdict = check_chain(at(events))
    assert verdict.intact
    assert (verdict.events, verdict.version, verdict.last_hash) == (3, 3, events[-1].hash)
    assert [c.status for c in checked] == ["applied"] * 3


def test_given_a_changed_field_with_the_old_hash_when_checked_then_broken_there() -> None:
    events = chain(3)
    events[1] = msgspec.structs.replace(events[1], device_token="forged")
    checked, verdict = check_chain(at(events))
    assert not verdict.intact
    assert verdict.broken_at is not None
    assert (verdict.broken_at.offset, verdict.broken_at.version) == (1, 2)
    assert "hash does not match" in verdict.broken_at.reason
    assert [c.status for c in checked] == ["applied", "broken", "unchecked"]
    assert [c.hash_ok for c in checked] == [True, False, True]


def test_given_a_resealed_event_that_does_not_link_when_checked_then_broken_there() -> None:
    events = chain(3)
    events[2] = registered(3, "0" * 64)  # a valid hash of its own, but the wrong prev_hash
    _, verdict = check_chain(at(events))
    assert verdict.broken_at is not None
    assert verdict.broken_at.version == 3
    assert "broken hash chain" in verdict.broken_at.reason


def test_given_a_missing_version_when_checked_then_the_gap_is_the_break() -> None:
    events = chain(3)
    del events[1]
    _, verdict = check_chain(at(events))
    assert verdict.broken_at is not None
    assert verdict.broken_at.version == 3


def test_given_a_re_emitted_event_when_checked_then_a_duplicate_not_a_break() -> None:
    events = chain(2)
    events.append(events[0])  # a re-processed command re-emits identical events
    checked, verdict = check_chain(at(events))
    assert verdict.intact
    assert verdict.duplicates == 1
    assert checked[-1].status == "duplicate"


def test_given_a_different_event_claiming_an_old_version_when_checked_then_broken() -> None:
    events = chain(2)
    events.append(registered(1, "", token="other"))  # sealed, but not the version 1 we had
    _, verdict = check_chain(at(events))
    assert verdict.broken_at is not None
    assert verdict.broken_at.offset == 2
    assert "a second, different version 1" in verdict.broken_at.reason


def test_given_channel_events_when_checked_then_listed_but_not_in_the_chain() -> None:
    channel = seal(
        ChannelCreated(
            event_id="e",
            app_id="app",
            version=1,
            occurred_at=1,
            command_id="c1",
            prev_hash="",
            channel="news",
        )
    )
    unregistered = seal(
        DeviceUnregistered(
            event_id="u",
            app_id="app",
            version=2,
            occurred_at=2,
            command_id="c2",
            prev_hash=chain(1)[0].hash,
            device_id="dev",
            channels=("news",),
        )
    )
    checked, verdict = check_chain(at([channel, *chain(1), unregistered]))
    assert verdict.intact
    assert [c.status for c in checked] == ["channel", "applied", "applied"]
    assert verdict.version == 2
