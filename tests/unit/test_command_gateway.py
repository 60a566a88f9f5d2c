"""One deadline per write (services/http/command_gateway.py): a command Kafka does not
acknowledge in time is Unavailable (5901: nothing was accepted); one it acknowledged whose
effect is not visible in time is NotVisibleInTime (5900: it will still take effect)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.structs import RecordMetadata

from events import Outcome, RegisterDevice
from projections.positions import Position, Record
from services.http.command_gateway import CommandGateway, NotVisibleInTime, Unavailable
from services.stream.visibility import Decided, Visibility

TOPIC = "t.commands"


class Producer:
    """Acknowledges at once, or never (`silent`)."""

    def __init__(self, silent: bool = False):
        self.silent = silent
        self.offset = 0

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> Any:
        if self.silent:
            await asyncio.Event().wait()
        self.offset += 1
        return RecordMetadata(topic, 1, None, self.offset - 1, 1234, 0, 0)


def command() -> RegisterDevice:
    return RegisterDevice(
        command_id="c1",
        app_id="app",
        device_id="dev",
        issued_at=1,
        device_token="t",
        os="IOS",
        os_version="17",
    )


class Handed(list[Record]):
    """The records the gateway handed over; `acked` is set at the first."""

    def __init__(self) -> None:
        super().__init__()
        self.acked = asyncio.Event()

    def __call__(self, record: Record) -> None:
        self.append(record)
        self.acked.set()


def gateway(producer: Producer, visibility: Visibility, handed: Handed) -> CommandGateway:
    return CommandGateway(producer, visibility, TOPIC, 50, handed)  # type: ignore[arg-type]


def outcome() -> Outcome:
    return Outcome(command_id="c1", app_id="app", device_id="dev", accepted=True, decided_at=1)


async def test_given_no_acknowledgement_in_time_then_unavailable_and_nothing_handed() -> None:
    handed = Handed()
    with pytest.raises(Unavailable):
        await gateway(Producer(silent=True), Visibility("t.events"), handed).submit(command())
    assert handed == []


async def test_given_acknowledged_but_never_decided_then_not_visible_in_time() -> None:
    handed = Handed()
    with pytest.raises(NotVisibleInTime):
        await gateway(Producer(), Visibility("t.events"), handed).submit(command())
    # The record Kafka acknowledged was handed over: it will still be decided
    assert [(r.topic, r.partition, r.offset, r.timestamp) for r in handed] == [(TOPIC, 1, 0, 1234)]


async def test_given_decided_but_not_applied_then_not_visible_in_time() -> None:
    visibility = Visibility("t.events")
    handed = Handed()
    submit = asyncio.ensure_future(gateway(Producer(), visibility, handed).submit(command()))
    await handed.acked.wait()
    visibility.decided(Decided(outcome(), (0, 5)))
    with pytest.raises(NotVisibleInTime):
        await submit


async def test_given_decided_and_applied_then_the_outcome() -> None:
    visibility = Visibility("t.events")
    handed = Handed()
    submit = asyncio.ensure_future(gateway(Producer(), visibility, handed).submit(command()))
    await handed.acked.wait()
    visibility.decided(Decided(outcome(), (0, 5)))
    await asyncio.sleep(0)
    visibility.applied([Position("t.events", 0, 6, "")])
    assert (await submit).accepted
