"""Kafka commands stay within their app and within their device's partition.

A command names its app in its body (Kafka has no REST key): whatever an app-b command says,
about a device id app-a also uses, it must neither change nor reveal app-a's device. A command
for an app devreg does not serve is rejected with 8002 (test_kafka_commands.py). A command on
another partition than its device's (keyed wrongly, or by another partitioner) is rejected:
taken, it would fork that device's history across two partitions and stop the projector,
every app's, at the apparent gap.

Whether a command left nothing behind is read up to a later command of the same device: the
processor handles a device's partition in order.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

from events import (
    AnyCommand,
    AnyEvent,
    DueExpiry,
    ExpireRegistration,
    ExpireRegistrations,
    Outcome,
    RegisterDevice,
    UnregisterDevice,
    decode_event,
    decode_outcome,
    encode,
)
from events.identity import partition_key, registration_id
from services.log.broker import EmbeddedBroker
from services.stream.ownership import Ownership
from tests.support import (
    PARTITIONS,
    WorkerProcess,
    admin_headers,
    call,
    equals,
    now_ms,
    registration,
    wait_for,
)
from tests.topics import read_topic

Records = list[ConsumerRecord[bytes, bytes]]


@pytest.fixture(scope="module")
async def producer(broker: EmbeddedBroker) -> AsyncIterator[AIOKafkaProducer]:
    client = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False)
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


class Commands:
    """Publishes commands as an outside producer does, and reads what became of them."""

    def __init__(self, worker: WorkerProcess, producer: AIOKafkaProducer):
        self.worker, self.producer = worker, producer
        self.bootstrap = worker.bootstrap or ""
        self.topic = f"{worker.prefix}.commands"

    async def send(self, command: AnyCommand, key: bytes | None = None) -> Outcome:
        """Publish keyed by the command's device (or by `key`); return its one outcome."""
        key = key or partition_key(command.app_id, command.device_id)
        await self.producer.send_and_wait(self.topic, encode(command), key=key)

        def answered(records: Records) -> bool:
            return any(decode_outcome(r.value).command_id == command.command_id for r in records)

        records = await read_topic(self.bootstrap, f"{self.worker.prefix}.outcomes", answered)
        outcomes = [decode_outcome(r.value) for r in records]
        return next(o for o in outcomes if o.command_id == command.command_id)

    async def events(self, until: Outcome) -> list[AnyEvent]:
        """The events topic from the start, up to the events of the outcome `until`."""
        last = until.event_ids[-1]

        def reached(records: Records) -> bool:
            return any(decode_event(r.value).event_id == last for r in records)

        records = await read_topic(self.bootstrap, f"{self.worker.prefix}.events", reached)
        return [decode_event(r.value) for r in records]


def register(app_id: str, device_id: str, **fields: Any) -> RegisterDevice:
    values: dict[str, Any] = {
        "command_id": uuid.uuid4().hex,
        "app_id": app_id,
        "device_id": device_id,
        "issued_at": now_ms(),
        "device_token": f"{app_id}-token",
        "os": "IOS",
        "os_version": "17",
        "channels": ("news",),
    }
    return RegisterDevice(**(values | fields))


def unregister(app_id: str, device_id: str) -> UnregisterDevice:
    return UnregisterDevice(
        command_id=uuid.uuid4().hex, app_id=app_id, device_id=device_id, issued_at=now_ms()
    )


async def versions(worker: WorkerProcess, app_id: str, device_id: str) -> list[int]:
    """The versions in the device's history, as the projection holds it."""
    status, history = await get(worker, app_id, f"registrations/{device_id}/history")
    return [e["version"] for e in history["events"]] if status == 200 else []


async def get(worker: WorkerProcess, app_id: str, path: str) -> tuple[int, Any]:
    url = worker.url(f"messaging/{path}", app_id=app_id)
    return await call("GET", url, headers=admin_headers(app_id))


async def test_given_an_app_a_device_when_app_b_commands_name_its_id_then_app_a_untouched(
    devreg_worker: WorkerProcess, producer: AIOKafkaProducer
) -> None:
    # Given an app-a device on channel "news", expiring in an hour
    device = f"shared-{uuid.uuid4().hex[:8]}"
    expiration = now_ms() + 3_600_000
    body = registration(device, channels=["news"], expiration=expiration)
    status, _ = await call("POST", devreg_worker.url("messaging/registrations"), json=body)
    assert status == 200
    _, app_a_before = await get(devreg_worker, "app-a", f"registrations/{device}")
    commands = Commands(devreg_worker, producer)

    # When app-b commands name the same device id: an unregistration, an expiry stamped past
    # app-a's expiration, a registration on the same channel, then an unregistration again
    unknown = await commands.send(unregister("app-b", device))
    expire = ExpireRegistration(
        command_id=uuid.uuid4().hex,
        app_id="app-b",
        device_id=device,
        issued_at=expiration + 1,
        expiration=expiration,
    )
    stale = await commands.send(expire)
    registered = await commands.send(register("app-b", device))
    removed = await commands.send(unregister("app-b", device))

    # Then app-b's device was unknown: nothing to remove or expire, no event
    assert (unknown.accepted, unknown.code, unknown.event_ids) == (False, 5001, ())
    assert (stale.accepted, stale.event_ids) == (True, ())
    # And app-b's registration started app-b's own history: its own registration id, version 1,
    # and a ChannelCreated of its own (app-a's channel "news" is not app-b's)
    assert registered.registration_ids == {"news": registration_id("app-b", device, "news")}
    assert removed.accepted
    events = await commands.events(until=removed)
    of_b = [e for e in events if e.command_id in {registered.command_id, removed.command_id}]
    assert [(type(e).__name__, e.app_id, e.version) for e in of_b] == [
        ("ChannelCreated", "app-b", 1),
        ("DeviceRegistered", "app-b", 1),
        ("DeviceUnregistered", "app-b", 2),
    ]
    # And no outcome of app-b's commands reveals anything of app-a's device
    app_a_id = registration_id("app-a", device, "news")
    for outcome in (unknown, stale, registered, removed):
        assert outcome.app_id == "app-b"
        assert b"app-a" not in encode(outcome)
        assert app_a_id.encode() not in encode(outcome)
    # And once the projection holds app-b's two device events, app-b's device is gone for
    # app-b, and app-a's is as it was: the same answer to GET, its one event in its history
    await wait_for(lambda: equals(versions(devreg_worker, "app-b", device), [1, 2]), 20, "app-b")
    status, answer = await get(devreg_worker, "app-b", f"registrations/{device}")
    assert (status, answer["code"]) == (400, 5000)
    assert await get(devreg_worker, "app-a", f"registrations/{device}") == (200, app_a_before)
    status, history = await get(devreg_worker, "app-a", f"registrations/{device}/history")
    assert status == 200
    assert [(e["type"], e["app_id"], e["version"]) for e in history["events"]] == [
        ("device-registered/1", "app-a", 1)
    ]


async def test_given_a_command_off_its_devices_partition_then_rejected_and_every_app_served(
    devreg_worker: WorkerProcess, producer: AIOKafkaProducer
) -> None:
    # Given an app-b device registered through its own partition, and an app-a device
    ownership = Ownership("", PARTITIONS)
    device, neighbour = f"b-{uuid.uuid4().hex[:8]}", f"a-{uuid.uuid4().hex[:8]}"
    while ownership.partition_of("app-a", neighbour) == ownership.partition_of("app-b", device):
        neighbour = f"a-{uuid.uuid4().hex[:8]}"
    commands = Commands(devreg_worker, producer)
    assert (await commands.send(register("app-a", neighbour))).accepted
    assert (await commands.send(register("app-b", device))).accepted

    # When app-b's next command is published keyed as the app-a device, so on its partition,
    # and a registration follows through the right partition
    off = await commands.send(unregister("app-b", device), key=partition_key("app-a", neighbour))
    after = await commands.send(register("app-b", device, device_token="later"))

    # Then the command off its partition is rejected (naming both partitions), with no event
    assert (off.accepted, off.code, off.event_ids) == (False, 5002, ())
    expected = ownership.partition_of("app-b", device)
    assert off.message is not None
    assert f"the device's is {expected}" in off.message
    assert after.accepted
    events = await commands.events(until=after)
    assert [e for e in events if e.command_id == off.command_id] == []

    # And the device's history stays on one partition, gapless: the projector goes on, and
    # both apps are served
    async def token() -> str | None:
        status, body = await get(devreg_worker, "app-b", f"registrations/{device}")
        return body[0]["deviceToken"] if status == 200 else None

    await wait_for(lambda: equals(token(), "later"), 20, "the later registration to be visible")
    assert await versions(devreg_worker, "app-b", device) == [1, 2]
    assert (await get(devreg_worker, "app-a", f"registrations/{neighbour}"))[0] == 200
    status, ready = await call("GET", f"{devreg_worker.base_url}/readyz")
    assert (status, ready["ready"]) == (200, True)


async def test_given_an_expiry_command_naming_a_device_of_another_partition_then_rejected(
    devreg_worker: WorkerProcess, producer: AIOKafkaProducer
) -> None:
    # Given two app-a devices on different partitions
    ownership = Ownership("", PARTITIONS)
    here, there = f"h-{uuid.uuid4().hex[:8]}", f"t-{uuid.uuid4().hex[:8]}"
    while ownership.partition_of("app-a", there) == ownership.partition_of("app-a", here):
        there = f"t-{uuid.uuid4().hex[:8]}"
    commands = Commands(devreg_worker, producer)
    assert (await commands.send(register("app-a", here))).accepted
    assert (await commands.send(register("app-a", there))).accepted

    # When one expiry command of many devices names both, on the first one's partition
    due = tuple(DueExpiry(device_id=d, expiration=now_ms(), version=1) for d in (here, there))
    both = ExpireRegistrations(
        command_id=uuid.uuid4().hex, app_id="app-a", issued_at=now_ms(), devices=due
    )
    off = await commands.send(both, key=partition_key("app-a", here))

    # Then it is refused whole, naming the device elsewhere, as any command off its partition
    assert (off.accepted, off.code, off.event_ids) == (False, 5002, ())
    assert off.message is not None
    assert repr(there) in off.message
    assert f"the device's is {ownership.partition_of('app-a', there)}" in off.message
