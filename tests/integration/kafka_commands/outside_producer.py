"""Publishing commands as a producer outside devreg does, and reading what devreg answers."""

from __future__ import annotations

import uuid
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord

from events import (
    AnyCommand,
    AnyEvent,
    DeviceRegistered,
    Outcome,
    RegisterDevice,
    decode_event,
    decode_outcome,
    encode,
)
from events.identity import partition_key
from services.stream.ownership import Ownership
from tests.support import PARTITIONS, WorkerProcess, call, now_ms
from tests.topics import read_topic

APP = "app-a"
Records = list[ConsumerRecord[bytes, bytes]]


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
    # A device whose key is on that partition: devreg rejects a command anywhere else.
    ownership = Ownership("", PARTITIONS)
    device = new_device("marker")
    while ownership.partition_of(APP, device) != partition:
        device = new_device("marker")
    marker = register_command(device)
    await publish(producer, topics.commands, marker, partition=partition)
    return marker.command_id


async def visible(worker: WorkerProcess, device_id: str) -> dict[str, Any] | None:
    status, body = await call("GET", worker.url(f"messaging/registrations/{device_id}"))
    return dict(body[0]) if status == 200 else None
