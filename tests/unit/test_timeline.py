"""The audit commands' human output (services/audit/timeline.py): a sentence per event."""

from __future__ import annotations

import re

import msgspec

from events import AnyEvent, ChannelCreated, DeviceForgotten, DeviceSuperseded, TokenRejected
from projections.chain import Position, check_chain
from services.audit.timeline import history_lines, replay_line, sentence, utc
from tests.unit.domain import HOUR, NOW, Registry, expire, register, unregister


def _story() -> list[AnyEvent]:
    registry = Registry()
    return [
        *registry.accepted(register(channels=("news",), device_token="t1"), NOW),
        *registry.accepted(
            register("reg-2", channels=("news", "sport"), device_token="t2"), NOW + 1
        ),
        *registry.accepted(unregister("unreg-1", channels=("news",)), NOW + 2),
        *registry.accepted(
            register("reg-3", channels=("sport",), device_token="t2", expiration=NOW + HOUR),
            NOW + 3,
        ),
        *registry.accepted(expire("exp-1", expiration=NOW + HOUR), NOW + HOUR),
        *registry.accepted(
            register("reg-4", channels=("news",), device_token="t3"), NOW + HOUR + 1
        ),
        *registry.accepted(unregister("unreg-2"), NOW + HOUR + 2),
    ]


def test_given_a_device_story_then_history_reads_as_a_timeline_one_line_per_event() -> None:
    events = _story()
    device_events = [(Position(0, i, 0), e) for i, e in enumerate(events)]
    checked, verdict = check_chain(device_events)

    lines = list(history_lines("app-1", "device-1", checked, verdict))

    assert lines[0] == "app-1 / device-1"
    # time (27 characters), version (4), sentence, [hash mark]
    parts = [re.fullmatch(r"(.{27})  (.{4})  (.*)  \[(.*)\]", line) for line in lines[1:-1]]
    assert all(parts), lines
    assert [p.group(3) for p in parts if p] == [
        "channel news created",
        "registered on news (ANDROID 14, token t1)",
        "channel sport created",
        "added to sport; renewed news; token changed from t1 to t2",
        "removed from news",
        f"renewed sport, until {utc(NOW + HOUR)}",
        f"expired on sport (expiration {utc(NOW + HOUR)})",
        "registered on news (ANDROID 14, token t3)",
        "unregistered (was on news)",
    ]
    assert [p.group(2).strip() for p in parts if p][:4] == ["", "v1", "", "v2"]
    assert all(p.group(4).endswith("… ok") for p in parts if p and p.group(2).strip())
    assert lines[-1].startswith("hash chain intact: 7 events")


def test_given_a_tampered_event_then_the_last_line_says_where_the_chain_breaks() -> None:
    events = _story()
    events[1] = msgspec.structs.replace(events[1], device_token="forged")  # type: ignore[type-var]
    checked, verdict = check_chain([(Position(3, i, 0), e) for i, e in enumerate(events)])

    lines = list(history_lines("app-1", "device-1", checked, verdict))

    assert "BROKEN (hash does not match its content)" in lines[2]
    assert lines[-1].startswith("HASH CHAIN BROKEN at partition 3 offset 1 (version 1)")


def test_given_events_without_context_then_replay_lines_name_device_and_place() -> None:
    created, registered = _story()[:2]
    assert isinstance(created, ChannelCreated)
    line = replay_line(2, 17, registered)
    assert line.endswith(
        "  2@17      app-1/device-1    v1  registered on news (ANDROID 14, token t1)"
        f"  [{registered.hash[:12]}…]"
    )
    assert sentence(created) == "channel news created"
    assert utc(0) == "1970-01-01 00:00:00.000 UTC"


def test_given_lifecycle_events_then_each_reads_as_what_happened_and_why() -> None:
    base = {
        "event_id": "e",
        "app_id": "app-1",
        "version": 2,
        "occurred_at": NOW,
        "command_id": "c",
        "prev_hash": "",
        "device_id": "device-1",
        "channels": ("news", "sport"),
    }
    rejected = TokenRejected(**base, provider="fcm", reason="UNREGISTERED", sent_at=0)
    superseded = DeviceSuperseded(**base, by_device_id="device-2")
    forgotten = DeviceForgotten(**{**base, "channels": ()}, reason="requested")
    assert sentence(rejected) == (
        "removed: fcm rejected its token (UNREGISTERED) for a push sent at"
        " 1970-01-01 00:00:00.000 UTC (was on news, sport)"
    )
    assert sentence(superseded) == (
        "superseded by device-2, which registered the same token (was on news, sport)"
    )
    assert sentence(forgotten) == "forgotten (requested): token and user fingerprint erased"
