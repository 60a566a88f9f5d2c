"""replay and history against a known log, published straight to an events topic.

No worker: the events are built here (sealed hash chains), including one forged event, so
every filter has an exact expected answer.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from events import (
    AnyEvent,
    ChannelCreated,
    DeviceRegistered,
    DeviceUnregistered,
    RegistrationExpired,
    encode,
)
from events.identity import event_id, partition_key, registration_id, seal
from services.log.broker import EmbeddedBroker
from tests.support import WorkerProcess

T0 = 1_700_000_000_000
PARTITIONS = {("app-a", "d1"): 0, ("app-a", "d2"): 1, ("app-b", "d1"): 2, ("app-a", "d3"): 0}


class Logged(msgspec.Struct, frozen=True):
    partition: int
    offset: int
    event: AnyEvent


class KnownLog(msgspec.Struct):
    env: dict[str, str]
    topic: str
    logged: list[Logged]
    producer_bootstrap: str

    def ids(self, *, where: Any = None) -> set[str]:
        return {e.event.event_id for e in self.logged if where is None or where(e)}


def sealed(cls: Any, app: str, version: int, at: int, prev: str, **fields: Any) -> Any:
    command = f"{app}/{fields.get('device_id') or fields.get('channel')}/{version}"
    return seal(
        cls(
            event_id=event_id(app, command, 0),
            app_id=app,
            version=version,
            occurred_at=T0 + at,
            command_id=command,
            prev_hash=prev,
            **fields,
        )
    )


def registered(app: str, device: str, version: int, at: int, prev: str, *channels: str) -> Any:
    return sealed(
        DeviceRegistered,
        app,
        version,
        at,
        prev,
        device_id=device,
        os="IOS",
        os_version="17",
        device_token=f"token-{device}-{version}",
        channels=channels,
        registration_ids={c: registration_id(app, device, c) for c in channels},
    )


def script() -> list[tuple[str, str, AnyEvent]]:
    """(app, device whose key it carries, event), in publishing order."""
    a1 = registered("app-a", "d1", 1, 1000, "", "news", "sports")
    a1b = registered("app-a", "d1", 2, 5000, a1.hash, "weather")
    a1c = sealed(
        DeviceUnregistered, "app-a", 3, 9000, a1b.hash, device_id="d1", channels=("sports",)
    )
    a2 = registered("app-a", "d2", 1, 2000, "", "news")
    expired = {"device_id": "d2", "channels": ("news",), "expiration": T0 + 6000}
    a2b = sealed(RegistrationExpired, "app-a", 2, 6000, a2.hash, **expired)
    b1 = registered("app-b", "d1", 1, 3000, "", "default")
    b1b = sealed(
        DeviceUnregistered, "app-b", 2, 7000, b1.hash, device_id="d1", channels=("default",)
    )
    a3 = registered("app-a", "d3", 1, 4000, "", "news")
    a3b = registered("app-a", "d3", 2, 8000, a3.hash, "news")
    # The forgery: a changed field on a copy of version 2 that keeps its hash, appended as
    # version 3 and linked to version 2 (so the live fold alone would accept it).
    forged = msgspec.structs.replace(
        a3b, version=3, device_token="forged", prev_hash=a3b.hash, occurred_at=T0 + 10000
    )
    return [
        ("app-a", "d1", sealed(ChannelCreated, "app-a", 1, 1000, "", channel="news")),
        ("app-a", "d1", sealed(ChannelCreated, "app-a", 1, 1000, "", channel="sports")),
        ("app-a", "d1", a1),
        ("app-a", "d2", a2),
        ("app-b", "d1", sealed(ChannelCreated, "app-b", 1, 3000, "", channel="default")),
        ("app-b", "d1", b1),
        ("app-a", "d3", a3),
        ("app-a", "d1", sealed(ChannelCreated, "app-a", 1, 5000, "", channel="weather")),
        ("app-a", "d1", a1b),
        ("app-a", "d2", a2b),
        ("app-b", "d1", b1b),
        ("app-a", "d3", a3b),
        ("app-a", "d1", a1c),
        ("app-a", "d3", forged),
    ]


async def publish(producer: AIOKafkaProducer, topic: str, app: str, device: str, e: Any) -> Logged:
    partition = PARTITIONS[(app, device)]
    sent = await producer.send_and_wait(
        topic,
        encode(e),
        key=partition_key(app, device),
        partition=partition,
        timestamp_ms=e.occurred_at,
    )
    return Logged(sent.partition, sent.offset, e)


@pytest.fixture(scope="module")
async def log(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> KnownLog:
    prefix = f"k{uuid.uuid4().hex[:10]}"
    topic = f"{prefix}.events"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        logged = [await publish(producer, topic, *item) for item in script()]
    finally:
        await producer.stop()
    worker = WorkerProcess(tmp_path_factory.mktemp("known-log"), broker.bootstrap, prefix)
    return KnownLog(worker.environment(), topic, logged, broker.bootstrap)


async def spawn(log: KnownLog, *args: str) -> asyncio.subprocess.Process:
    """`python -m services <args> --quiet` against the known log."""
    pipe, devnull = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
    command = (sys.executable, "-m", "services", *args, "--quiet")
    return await asyncio.create_subprocess_exec(
        *command, env=log.env, stdin=devnull, stdout=pipe, stderr=pipe
    )


async def devreg(log: KnownLog, *args: str) -> tuple[int, list[dict[str, Any]], str]:
    process = await spawn(log, *args)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, [json.loads(line) for line in out.splitlines()], err.decode()


async def replayed(log: KnownLog, *args: str) -> set[str]:
    code, lines, err = await devreg(log, "replay", *args)
    assert code == 0, err
    return {line["event"]["event_id"] for line in lines}


async def test_given_no_filter_when_replayed_then_every_event_in_log_order(log: KnownLog) -> None:
    code, lines, err = await devreg(log, "replay")
    assert code == 0, err
    for partition in range(3):
        offsets = [line["offset"] for line in lines if line["partition"] == partition]
        assert offsets == sorted(offsets)
    expected = {(e.partition, e.offset): json.loads(encode(e.event)) for e in log.logged}
    assert {(line["partition"], line["offset"]): line["event"] for line in lines} == expected


async def test_given_app_and_device_filters_when_replayed_then_only_theirs(log: KnownLog) -> None:
    assert await replayed(log, "--app", "app-b") == log.ids(
        where=lambda e: e.event.app_id == "app-b"
    )
    expected = log.ids(
        where=lambda e: (e.event.app_id, getattr(e.event, "device_id", "")) == ("app-a", "d1")
    )
    assert await replayed(log, "--app", "app-a", "--device", "d1") == expected


async def test_given_a_channel_filter_when_replayed_then_events_naming_it(log: KnownLog) -> None:
    def names_news(e: Logged) -> bool:
        event = e.event
        return (
            event.channel == "news"
            if isinstance(event, ChannelCreated)
            else "news" in event.channels
        )

    assert await replayed(log, "--channel", "news") == log.ids(where=names_news)


async def test_given_type_filters_when_replayed_then_only_those_types(log: KnownLog) -> None:
    wanted = (DeviceUnregistered, RegistrationExpired)
    found = await replayed(log, "--type", "device-unregistered/1", "--type", "RegistrationExpired")
    assert found == log.ids(where=lambda e: isinstance(e.event, wanted))
    assert len(found) == 3
    code, _, err = await devreg(log, "replay", "--type", "device-exploded/1")
    assert code == 2
    assert "unknown event type" in err


async def test_given_a_time_range_when_replayed_then_events_that_occurred_in_it(
    log: KnownLog,
) -> None:
    since = datetime.fromtimestamp((T0 + 5000) / 1000, UTC).isoformat()
    expected = log.ids(where=lambda e: T0 + 5000 <= e.event.occurred_at <= T0 + 8000)
    assert len(expected) == 5
    # The broker's time index where it answers right, a scan where it does not (Tansu) ...
    assert await replayed(log, "--since", since, "--until", str(T0 + 8000)) == expected
    # ... and a scan on request: the same answer
    assert await replayed(log, "--since", since, "--until", str(T0 + 8000), "--scan") == expected


async def test_given_start_offsets_when_replayed_then_from_there(log: KnownLog) -> None:
    assert await replayed(log, "--from-offset", "2") == log.ids(where=lambda e: e.offset >= 2)
    expected = log.ids(where=lambda e: e.partition != 0 or e.offset >= 5)
    assert await replayed(log, "--from-offset", "0:5") == expected


async def test_given_follow_when_an_event_arrives_then_it_is_printed(log: KnownLog) -> None:
    process = await spawn(log, "replay", "--follow", "--app", "app-b")
    assert process.stdout is not None
    try:
        # Given a tail that has printed the log so far
        seen = [json.loads(await asyncio.wait_for(process.stdout.readline(), 30)) for _ in range(3)]
        assert {line["event"]["app_id"] for line in seen} == {"app-b"}
        # When a new event is appended
        producer = AIOKafkaProducer(bootstrap_servers=log.producer_bootstrap)
        await producer.start()
        try:
            late = registered("app-b", "d1", 3, 20000, seen[-1]["event"]["hash"], "default")
            await publish(producer, log.topic, "app-b", "d1", late)
        finally:
            await producer.stop()
        # Then it is printed, and the tail stops cleanly when asked
        line = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
        assert line["event"]["event_id"] == late.event_id
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0


async def test_given_a_forged_event_when_history_is_read_then_the_break_is_at_it(
    log: KnownLog,
) -> None:
    forged = next(e for e in log.logged if getattr(e.event, "device_token", "") == "forged")
    code, [found], err = await devreg(log, "history", "app-a", "d3")
    assert code == 1, err
    assert found["chain"]["intact"] is False
    broken = found["chain"]["broken_at"]
    where = (broken["partition"], broken["offset"], broken["version"])
    assert where == (forged.partition, forged.offset, 3)
    assert "hash does not match" in broken["reason"]
    assert [e["status"] for e in found["events"]] == ["applied", "applied", "broken"]

    # And an untouched device's chain is intact
    code, [found], err = await devreg(log, "history", "app-a", "d1")
    assert code == 0, err
    assert found["chain"] == {
        "intact": True,
        "events": 3,
        "version": 3,
        "last_hash": found["events"][-1]["event"]["hash"],
    }
