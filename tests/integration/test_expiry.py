"""Expiry: registrations disappear at their expiration, on time, recorded as events."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from events import AnyEvent, RegisterDevice, RegistrationExpired, encode
from events.identity import partition_key
from services.log.broker import EmbeddedBroker
from tests.support import WorkerProcess, call, equals, now_ms, registration, wait_for
from tests.topics import read_events


def expiries(events: list[AnyEvent], device_id: str) -> list[RegistrationExpired]:
    return [e for e in events if isinstance(e, RegistrationExpired) and e.device_id == device_id]


async def get_channels(worker: WorkerProcess, device_id: str) -> list[str] | int:
    status, body = await call("GET", worker.url(f"messaging/registrations/{device_id}"))
    return body[0]["channels"] if status == 200 else body["code"]


async def register(worker: WorkerProcess, device_id: str, **fields: object) -> None:
    url = worker.url("messaging/registrations")
    status, body = await call("POST", url, json=registration(device_id, **fields))
    assert status == 200, body


@pytest.fixture
async def worker(broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[WorkerProcess]:
    process = WorkerProcess(tmp_path / "data", broker.bootstrap)
    await process.start()
    yield process
    await process.stop()


async def test_given_an_expiration_when_it_passes_then_one_expiry_event_on_time(
    worker: WorkerProcess,
) -> None:
    # Given a registration that expires in 1.5 s
    expiration = now_ms() + 1500
    await register(worker, "soon", channels=["news"], expiration=expiration)
    assert await get_channels(worker, "soon") == ["news"]

    # When the expiration passes
    await wait_for(
        lambda: equals(get_channels(worker, "soon"), 5000), 10, "the device to disappear"
    )

    # Then the log holds exactly one RegistrationExpired, within a second of the expiration
    topic = f"{worker.prefix}.events"
    events = await read_events(worker.bootstrap or "", topic, lambda e: bool(expiries(e, "soon")))
    [expired] = expiries(events, "soon")
    assert expired.expiration == expiration
    assert expired.channels == ("news",)
    assert 0 <= expired.occurred_at - expiration <= 1000


async def test_given_a_later_re_registration_when_the_first_expiration_passes_then_nothing_expires(
    worker: WorkerProcess,
) -> None:
    # Given a registration expiring in 1.5 s, re-registered with a later expiration before it
    first = now_ms() + 1500
    await register(worker, "renewed", channels=["news"], expiration=first)
    await register(worker, "renewed", channels=["news"], expiration=now_ms() + 60_000)

    # When the first expiration passes (and a later registration proves the log moved on)
    await wait_for(lambda: now_ms() >= first + 300, 5, "the first expiration to pass")
    await register(worker, "marker", channels=["news"])

    # Then the device is still registered and nothing expired
    assert await get_channels(worker, "renewed") == ["news"]
    topic = f"{worker.prefix}.events"
    events = await read_events(
        worker.bootstrap or "",
        topic,
        lambda e: any(getattr(x, "device_id", "") == "marker" for x in e),
    )
    assert expiries(events, "renewed") == []


async def test_given_two_channels_when_one_expires_then_the_other_stays(
    worker: WorkerProcess,
) -> None:
    # Given a device on A (expiring) and B (no expiration)
    await register(worker, "split", channels=["a"], expiration=now_ms() + 1000)
    await register(worker, "split", channels=["b"])

    # When A's expiration passes, then the device keeps B, and the log says A expired
    await wait_for(lambda: equals(get_channels(worker, "split"), ["b"]), 10, "A to expire")
    events = await read_events(
        worker.bootstrap or "", f"{worker.prefix}.events", lambda e: bool(expiries(e, "split"))
    )
    [expired] = expiries(events, "split")
    assert expired.channels == ("a",)


async def test_given_a_stopped_worker_when_an_expiration_passes_then_it_expires_once_on_start(
    worker: WorkerProcess,
) -> None:
    # Given a registration whose expiration passes while the worker is down
    expiration = now_ms() + 1000
    await register(worker, "asleep", channels=["news"], expiration=expiration)
    assert await worker.stop() == 0
    await wait_for(lambda: now_ms() >= expiration + 200, 5, "the expiration to pass")

    # When the worker starts again
    await worker.start()

    # Then it expires the registration at once, exactly once
    await wait_for(lambda: equals(get_channels(worker, "asleep"), 5000), 10, "the expiry")
    await register(worker, "marker-2", channels=["news"])
    events = await read_events(
        worker.bootstrap or "",
        f"{worker.prefix}.events",
        lambda e: any(getattr(x, "device_id", "") == "marker-2" for x in e),
    )
    assert len(expiries(events, "asleep")) == 1


async def test_given_a_burst_of_expirations_in_one_second_then_all_expire(
    worker: WorkerProcess,
) -> None:
    # Given 10k registrations (published as Kafka commands) expiring within the same second
    count = 10_000
    expiration = now_ms() + 8000
    producer = AIOKafkaProducer(bootstrap_servers=worker.bootstrap, linger_ms=5)
    await producer.start()
    try:
        sends = []
        for i in range(count):
            command = RegisterDevice(
                command_id=uuid.uuid4().hex,
                app_id=worker.app_id,
                device_id=f"burst-{i}",
                device_token=f"t-{i}",  # one device per token: each its own
                os="ANDROID",
                os_version="14",
                channels=("burst",),
                expiration=expiration + i % 1000,
            )
            key = partition_key(worker.app_id, command.device_id)
            sends.append(await producer.send(f"{worker.prefix}.commands", encode(command), key=key))
        for send in sends:
            await send
    finally:
        await producer.stop()

    # When they fall due, then every one of them expires (completeness; lag is in bench/)
    def all_expired(events: list[AnyEvent]) -> bool:
        return sum(isinstance(e, RegistrationExpired) for e in events) >= count

    events = await read_events(
        worker.bootstrap or "", f"{worker.prefix}.events", all_expired, deadline_s=90
    )
    expired = {e.device_id for e in events if isinstance(e, RegistrationExpired)}
    assert expired == {f"burst-{i}" for i in range(count)}
    assert sum(isinstance(e, RegistrationExpired) for e in events) == count
