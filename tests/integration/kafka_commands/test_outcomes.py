"""Accepted commands: their effect, exactly one outcome per delivery, and the decision's clock."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaProducer

from events import DeviceRegistered, encode
from events.identity import event_id, registration_id
from tests.integration.kafka_commands.outside_producer import (
    APP,
    Topics,
    new_device,
    publish,
    publish_marker,
    register_command,
    visible,
)
from tests.support import WorkerProcess, now_ms, wait_for


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
