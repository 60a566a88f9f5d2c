"""Poison input: undecodable records go to the dead-letter topic, invalid commands get a
rejected outcome and no event, and later commands are processed all the same."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaProducer

from events import UnregisterDevice
from services.log.broker import EmbeddedBroker
from tests.integration.kafka_commands.outside_producer import (
    APP,
    Records,
    Topics,
    new_device,
    publish,
    publish_marker,
    register_command,
    visible,
)
from tests.support import WorkerProcess, call, now_ms, registration, wait_for
from tests.topics import read_topic


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
