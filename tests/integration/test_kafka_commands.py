"""Commands published straight to Kafka (DESIGN.md §4): outcomes, dead letters, idempotency.

A producer outside devreg publishes to `<prefix>.commands` with the device's partition key;
the tests read `<prefix>.outcomes`, `<prefix>.events` and `<prefix>.commands.dlq` from the
beginning with plain consumers, and check the effect over HTTP.

To prove something did *not* happen (no second outcome, no event), a test publishes a marker
command to the same partition after it and reads until the marker's own record: the processor
handles a partition in order and emits a command's records to the partition it came from, so
anything the first command produced sits before the marker's.
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
    DeviceRegistered,
    Outcome,
    RegisterDevice,
    UnregisterDevice,
    decode_event,
    decode_outcome,
    encode,
)
from events.identity import event_id, partition_key, registration_id
from services.broker import EmbeddedBroker
from tests.support import WorkerProcess, call, now_ms, read_topic, registration, wait_for

APP = "app-a"
Records = list[ConsumerRecord[bytes, bytes]]


# --- helpers ------------------------------------------------------------------------------


class Topics:
    """A worker's topics and how to read them."""

    def __init__(self, bootstrap: str, prefix: str):
        self.bootstrap = bootstrap
        self.commands = f"{prefix}.commands"
        self.events = f"{prefix}.events"
        self.outcomes = f"{prefix}.outcomes"
        self.dlq = f"{prefix}.commands.dlq"

    async def outcomes_of(self, command_id: str, count: int = 1) -> list[Outcome]:
        """Every outcome of `command_id`, once at least `count` have been read."""

        def enough(records: Records) -> bool:
            return len(outcomes_for(records, command_id)) >= count

        return outcomes_for(await read_topic(self.bootstrap, self.outcomes, enough), command_id)

    async def events_until(self, command_id: str) -> list[AnyEvent]:
        """The events topic from the beginning up to a DeviceRegistered of `command_id`."""

        def registered(records: Records) -> bool:
            return any(
                isinstance(e, DeviceRegistered) and e.command_id == command_id
                for e in decoded_events(records)
            )

        return decoded_events(await read_topic(self.bootstrap, self.events, registered))


def outcomes_for(records: Records, command_id: str) -> list[Outcome]:
    decoded = (decode_outcome(r.value) for r in records if r.value is not None)
    return [o for o in decoded if o.command_id == command_id]


def decoded_events(records: Records) -> list[AnyEvent]:
    return [decode_event(r.value) for r in records if r.value is not None]


def register_command(device_id: str, app_id: str = APP, **fields: Any) -> RegisterDevice:
    values: dict[str, Any] = {
        "command_id": uuid.uuid4().hex,
        "app_id": app_id,
        "device_id": device_id,
        "issued_at": now_ms(),
        "device_token": f"token-{device_id}",
        "os": "IOS",
        "os_version": "17.2",
    }
    values.update(fields)
    return RegisterDevice(**values)


def new_device(label: str = "kdev") -> str:
    return f"{label}-{uuid.uuid4().hex}"


async def publish(
    producer: AIOKafkaProducer,
    topic: str,
    command: AnyCommand,
    partition: int | None = None,
    timestamp_ms: int | None = None,
) -> Any:
    """Publish like any outside producer: value = the command, key = the device's key."""
    return await producer.send_and_wait(
        topic,
        encode(command),
        key=partition_key(command.app_id, command.device_id),
        partition=partition,
        timestamp_ms=timestamp_ms,
    )


async def publish_marker(producer: AIOKafkaProducer, topics: Topics, partition: int) -> str:
    """A valid command on `partition`; returns its command id (see the module docstring)."""
    marker = register_command(new_device("marker"))
    await publish(producer, topics.commands, marker, partition=partition)
    return marker.command_id


async def visible(worker: WorkerProcess, device_id: str) -> dict[str, Any] | None:
    status, body = await call("GET", worker.url(f"messaging/registrations/{device_id}"))
    return dict(body[0]) if status == 200 else None


@pytest.fixture(scope="module")
async def producer(broker: EmbeddedBroker) -> AsyncIterator[AIOKafkaProducer]:
    # Tansu has no idempotent producer (DESIGN.md §10).
    client = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=False
    )
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


@pytest.fixture
def topics(broker: EmbeddedBroker, devreg_worker: WorkerProcess) -> Topics:
    return Topics(broker.bootstrap, devreg_worker.prefix)


# --- tests --------------------------------------------------------------------------------


async def test_given_a_register_command_on_kafka_when_processed_then_visible_with_one_outcome(
    devreg_worker: WorkerProcess, topics: Topics, producer: AIOKafkaProducer
) -> None:
    # Given a RegisterDevice naming two channels no one has named before
    device = new_device()
    channels = (f"zz-{uuid.uuid4().hex[:8]}", f"aa-{uuid.uuid4().hex[:8]}")
    command = register_command(device, channels=channels)

    # When it is published straight to the commands topic
    sent = await publish(producer, topics.commands, command)

    # Then the registration shows up over HTTP
    found = await wait_for(lambda: visible(devreg_worker, device), 20, f"GET of {device}")
    assert found == {
        "id": registration_id(APP, device, min(channels)),
        "deviceId": device,
        "deviceToken": f"token-{device}",
        "os": "IOS",
        "osVersion": "17.2",
        "channels": sorted(channels),
        "expiration": None,
    }

    # And its one outcome is accepted, with the registration ids and the event ids
    (outcome,) = await topics.outcomes_of(command.command_id)
    assert outcome.accepted
    assert (outcome.app_id, outcome.device_id) == (APP, device)
    assert outcome.decided_at == command.issued_at
    assert outcome.registration_ids == {c: registration_id(APP, device, c) for c in channels}
    # two ChannelCreated (slots 1 and 2, the channels' places), then the DeviceRegistered (0)
    assert outcome.event_ids == tuple(event_id(APP, command.command_id, i) for i in (1, 2, 0))
    assert (outcome.code, outcome.message) == (None, None)

    # And those ids are the events the log holds for the command
    events = await topics.events_until(command.command_id)
    logged = [e for e in events if e.command_id == command.command_id]
    assert tuple(e.event_id for e in logged) == outcome.event_ids
    assert isinstance(logged[-1], DeviceRegistered)
    assert logged[-1].registration_ids == outcome.registration_ids

    # And there is no second outcome: read up to a later command on the same partition
    marker = await publish_marker(producer, topics, sent.partition)
    await topics.outcomes_of(marker)
    assert len(await topics.outcomes_of(command.command_id)) == 1


async def test_given_a_command_without_issued_at_when_processed_then_decided_at_record_time(
    devreg_worker: WorkerProcess, topics: Topics, producer: AIOKafkaProducer
) -> None:
    # Given a command whose producer did not stamp it
    command = register_command(new_device(), issued_at=None)
    assert b"issued_at" not in encode(command)

    # When it is published (the producer stamps the record with its own time)
    before = now_ms()
    await publish(producer, topics.commands, command)
    after = now_ms()

    # Then it is decided at the record's time: the produce time
    (outcome,) = await topics.outcomes_of(command.command_id)
    assert outcome.accepted, outcome
    assert before <= outcome.decided_at <= after, (before, outcome.decided_at, after)


async def test_given_an_old_record_timestamp_and_no_issued_at_then_decided_at_equals_it(
    devreg_worker: WorkerProcess, topics: Topics, producer: AIOKafkaProducer
) -> None:
    # Given a command without issued_at in a record stamped 90 s ago (not the processing time)
    command = register_command(new_device(), issued_at=None)
    stamped = now_ms() - 90_000

    # When it is published with that record timestamp
    await publish(producer, topics.commands, command, timestamp_ms=stamped)

    # Then the decision's clock is exactly the record's
    (outcome,) = await topics.outcomes_of(command.command_id)
    assert outcome.accepted, outcome
    assert outcome.decided_at == stamped


async def test_given_undecodable_records_when_processed_then_dead_lettered_and_work_goes_on(
    devreg_worker: WorkerProcess, topics: Topics, producer: AIOKafkaProducer
) -> None:
    tag = uuid.uuid4().hex
    # Given garbage bytes, JSON of no command's shape, and a known tag missing its fields
    bad = {
        b"garbage-" + tag.encode(): b"\x00\xff\xfe not json " + tag.encode(),
        b"shape-" + tag.encode(): b'{"hello": "' + tag.encode() + b'"}',
        b"partial-" + tag.encode(): b'{"type": "register-device/1", "command_id": "'
        + tag.encode()
        + b'"}',
    }
    sources = {}
    for key, value in bad.items():
        sent = await producer.send_and_wait(topics.commands, value, key=key)
        sources[key] = f"{topics.commands}[{sent.partition}]@{sent.offset}"

    # When a valid command is published after them
    device = new_device()
    await publish(producer, topics.commands, register_command(device))

    # Then the valid command is still processed
    await wait_for(lambda: visible(devreg_worker, device), 20, f"GET of {device}")

    # And each bad record is on the dead-letter topic, as it was, with a reason and its source
    def all_dead(records: Records) -> bool:
        return set(bad) <= {r.key for r in records}

    dead = {r.key: r for r in await read_topic(topics.bootstrap, topics.dlq, all_dead)}
    for key, value in bad.items():
        record = dead[key]
        assert record.value == value
        headers = dict(record.headers)
        assert set(headers) >= {"reason", "source"}, headers
        assert headers["reason"], headers
        assert headers["source"].decode() == sources[key]


async def test_given_one_command_id_published_three_times_then_three_equal_outcomes_one_event(
    devreg_worker: WorkerProcess, topics: Topics, producer: AIOKafkaProducer
) -> None:
    command = register_command(new_device(), channels=("default",))

    # When it is published once, decided, and then published twice more
    sent = await publish(producer, topics.commands, command)
    await topics.outcomes_of(command.command_id)
    await publish(producer, topics.commands, command)
    await publish(producer, topics.commands, command)

    # Then it has three outcomes, all identical (the same event ids every time)
    outcomes = await topics.outcomes_of(command.command_id, count=3)
    assert outcomes[0].accepted
    assert outcomes[0].event_ids
    assert outcomes == [outcomes[0]] * 3

    # And, up to a later command on the same partition, no fourth outcome and one event
    marker = await publish_marker(producer, topics, sent.partition)
    await topics.outcomes_of(marker)
    assert len(await topics.outcomes_of(command.command_id)) == 3
    events = await topics.events_until(marker)
    registered = [
        e for e in events if isinstance(e, DeviceRegistered) and e.command_id == command.command_id
    ]
    assert len(registered) == 1
    assert registered[0].event_id in outcomes[0].event_ids


async def test_given_a_command_for_an_unconfigured_app_then_rejected_8002_and_no_events(
    devreg_worker: WorkerProcess, topics: Topics, producer: AIOKafkaProducer
) -> None:
    # Given an app devreg is not configured for
    app = f"not-configured-{uuid.uuid4().hex[:8]}"
    command = register_command(new_device(), app_id=app)

    # When a command for it is published
    sent = await publish(producer, topics.commands, command)

    # Then its outcome is a rejection with 8002
    (outcome,) = await topics.outcomes_of(command.command_id)
    assert not outcome.accepted
    assert outcome.code == 8002
    assert outcome.message
    assert app in outcome.message
    assert (outcome.event_ids, outcome.registration_ids) == ((), {})

    # And the log holds no event for it, up to a later command on the same partition
    marker = await publish_marker(producer, topics, sent.partition)
    events = await topics.events_until(marker)
    assert [e for e in events if e.app_id == app or e.command_id == command.command_id] == []


async def test_given_an_unknown_device_when_unregistering_over_kafka_then_rejected_5001(
    devreg_worker: WorkerProcess, topics: Topics, producer: AIOKafkaProducer
) -> None:
    device = new_device()
    command = UnregisterDevice(
        command_id=uuid.uuid4().hex, app_id=APP, device_id=device, issued_at=now_ms()
    )

    await publish(producer, topics.commands, command)

    (outcome,) = await topics.outcomes_of(command.command_id)
    assert not outcome.accepted
    assert outcome.code == 5001
    assert outcome.message
    assert device in outcome.message
    assert outcome.event_ids == ()


async def test_given_an_expiration_too_large_to_store_then_rejected_5004_and_still_serving(
    broker: EmbeddedBroker, expendable_worker: WorkerProcess, producer: AIOKafkaProducer
) -> None:
    # Given a command whose expiration (ms) is beyond SQLite's INTEGER range (2^63 - 1)
    topics = Topics(broker.bootstrap, expendable_worker.prefix)
    command = register_command(new_device(), expiration=2**63)

    # When it is published
    await publish(producer, topics.commands, command)

    # Then it is rejected as an invalid expiration, the same rule as HTTP
    (outcome,) = await topics.outcomes_of(command.command_id)
    assert (outcome.accepted, outcome.code) == (False, 5004), outcome
    # And the worker still registers and serves devices
    device = new_device("after")
    status, body = await call(
        "POST", expendable_worker.url("messaging/registrations"), json=registration(device)
    )
    assert status == 200, body
    assert await visible(expendable_worker, device) is not None
