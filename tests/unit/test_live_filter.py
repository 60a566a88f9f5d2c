"""Which events a live viewer sees (services/stream/live_tail.py): only its app's, and only the
channel's or the device's when it asked for one, events of unknown types included."""

from __future__ import annotations

import asyncio

import msgspec

from services.kafka.clients import KafkaAccess
from services.log.broker import free_port
from services.metrics import Metrics
from services.stream.live_tail import QUEUE_EVENTS, Envelope, LiveTail, TailFilter, Viewer


def _envelope(**fields: object) -> Envelope:
    return msgspec.json.decode(msgspec.json.encode(fields), type=Envelope)


def test_given_filters_then_only_the_apps_and_the_named_channel_or_device() -> None:
    registered = _envelope(
        app_id="a", device_id="d1", channels=["news"], type="device-registered/1"
    )
    created = _envelope(app_id="a", channel="news", type="channel-created/1")
    elsewhere = _envelope(app_id="b", device_id="d1", channels=["news"])
    erased = _envelope(app_id="a", device_id="d1", type="device-erased/1", tombstone=True)

    everything = TailFilter("a")
    assert [everything.matches(e) for e in (registered, created, elsewhere, erased)] == [
        True,
        True,
        False,
        True,
    ]
    on_news = TailFilter("a", channel="news")
    assert [on_news.matches(e) for e in (registered, created, elsewhere, erased)] == [
        True,
        True,
        False,
        False,
    ]
    device = TailFilter("a", device_id="d1")
    assert [device.matches(e) for e in (registered, created, elsewhere, erased)] == [
        True,
        False,
        False,
        True,
    ]


def test_given_a_viewer_that_falls_behind_then_it_is_cut_off_not_buffered() -> None:
    viewer = Viewer(TailFilter("a"))
    cut = [viewer.offer(b"{}") for _ in range(QUEUE_EVENTS + 5)]

    assert cut.count(True) == 1  # counted once, when it happens
    assert viewer.ended is not None
    assert "fell behind" in viewer.ended
    assert viewer.queue.qsize() == QUEUE_EVENTS


async def test_given_no_kafka_then_a_viewer_is_told_at_once_not_left_waiting() -> None:
    # Given a tail whose broker is not there (a closed loopback port)
    tail = LiveTail(
        KafkaAccess(f"127.0.0.1:{free_port()}"),
        "t.events",
        3,
        lambda: None,
        dict,
        Metrics(),
    )
    try:
        # When someone watches, Then the stream ends with the reason instead of hanging
        viewer = await asyncio.wait_for(tail.watch(TailFilter("a")), 30)
        assert viewer.ended == "the events topic cannot be read; try again shortly"
    finally:
        await tail.close()
