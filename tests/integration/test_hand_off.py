"""The worker decides its own commands at Kafka's acknowledgement, and stops reading them back
(services/stream/hand_off.py); a command another producer publishes on the same partition
must still be decided, in log order: at once when the worker's next own command there meets
it (a gap), and within DEVREG_COMMANDS_RECHECK_MS when none does."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events import DeviceRegistered, DeviceUnregistered, RegisterDevice, UnregisterDevice
from services.log.broker import EmbeddedBroker
from services.stream.ownership import Ownership
from tests.support import PARTITIONS, WorkerProcess, call, metric, now_ms, registration, wait_for
from tests.topics import publish_commands, read_events

OWNERSHIP = Ownership("http://unused", PARTITIONS)


async def register(worker: WorkerProcess, device: str, channel: str) -> None:
    url = worker.url("messaging/registrations")
    status, body = await call("POST", url, registration(device, channels=[channel]))
    assert status == 200, body  # answered once visible


def on_partition(partition: int, app_id: str) -> str:
    return next(
        device
        for device in (f"ho-{uuid.uuid4().hex[:8]}" for _ in range(1000))
        if OWNERSHIP.partition_of(app_id, device) == partition
    )


async def paused_after_own_writes(worker: WorkerProcess, device: str) -> None:
    """Register `device` until the worker's reading of its commands partition brings only
    commands the hand-off decided already, and is paused. (A fetch may win the race against
    the hand-off now and then; then the log decides that one, and nothing pauses.)"""
    for attempt in range(20):
        await register(worker, device, f"own-{attempt}")
        try:
            await wait_for(lambda: paused(worker), 2, "the commands partition to pause")
            return
        except AssertionError:
            continue
    raise AssertionError("the commands partition was never paused")


async def paused(worker: WorkerProcess) -> bool:
    return await metric(worker, "devreg_commands_read_back_paused_partitions") >= 1


async def foreign_unregistration(
    broker: EmbeddedBroker, worker: WorkerProcess, device: str, channel: str
) -> None:
    """Another producer's UnregisterDevice of one channel, straight onto the commands topic:
    a command with nothing personal in it, so it is decided where it lies in the log (a raw
    token would be sealed and sent again first: docs/design.md §12)."""
    command = UnregisterDevice(
        command_id=f"elsewhere-{uuid.uuid4().hex}",
        app_id=worker.app_id,
        device_id=device,
        issued_at=now_ms(),
        channels=(channel,),
    )
    await publish_commands(broker.bootstrap, f"{worker.prefix}.commands", [command])


async def foreign_registration(
    broker: EmbeddedBroker, worker: WorkerProcess, device: str, channel: str
) -> None:
    """A RegisterDevice of another producer, straight onto the commands topic."""
    command = RegisterDevice(
        command_id=f"elsewhere-{uuid.uuid4().hex}",
        app_id=worker.app_id,
        device_id=device,
        issued_at=now_ms(),
        device_token=f"token-{device}",
        os="IOS",
        os_version="17",
        channels=(channel,),
    )
    await publish_commands(broker.bootstrap, f"{worker.prefix}.commands", [command])


async def device_channels(worker: WorkerProcess, device: str) -> set[str] | None:
    status, body = await call("GET", worker.url(f"messaging/registrations/{device}"))
    return set(body[0]["channels"]) if status == 200 else None


@pytest.fixture
async def no_recheck(broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[WorkerProcess]:
    env = {"DEVREG_COMMANDS_RECHECK_MS": "600000"}  # only a gap resumes within the test
    async with WorkerProcess(tmp_path / "w", broker.bootstrap, env=env) as worker:
        yield worker


@pytest.fixture
async def quick_recheck(broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[WorkerProcess]:
    env = {"DEVREG_COMMANDS_RECHECK_MS": "300"}
    async with WorkerProcess(tmp_path / "w", broker.bootstrap, env=env) as worker:
        yield worker


async def test_given_a_foreign_command_between_two_own_ones_then_decided_in_log_order(
    broker: EmbeddedBroker, no_recheck: WorkerProcess
) -> None:
    # Given a device registered over HTTP, its commands partition paused
    worker = no_recheck
    device = on_partition(0, worker.app_id)
    await paused_after_own_writes(worker, device)

    # When another producer unregisters it from "own-0", and then the worker registers "own"
    await foreign_unregistration(broker, worker, device, "own-0")
    await register(worker, device, "own")  # 200: visible, so both were decided

    # Then the two were decided in the log's order: the removal first, "own" on top of it
    def of_device(events: list[object]) -> list[DeviceRegistered | DeviceUnregistered]:
        kinds = (DeviceRegistered, DeviceUnregistered)
        return [e for e in events if isinstance(e, kinds) and e.device_id == device]

    events = await read_events(
        broker.bootstrap,
        f"{worker.prefix}.events",
        lambda found: any(e.channels == ("own",) for e in of_device(found)),
    )
    by_version = {e.version: (type(e).__name__, e.channels) for e in of_device(events)}
    order = [by_version[v] for v in sorted(by_version)]
    assert order[-2:] == [("DeviceUnregistered", ("own-0",)), ("DeviceRegistered", ("own",))]
    channels = await device_channels(worker, device)
    assert channels is not None
    assert "own" in channels
    assert "own-0" not in channels
    # And it was the gap that made the worker read the partition again
    assert await metric(worker, "devreg_commands_read_back_resumes_total", reason="gap") >= 1


async def test_given_a_paused_partition_when_a_foreign_command_lands_then_decided_by_recheck(
    broker: EmbeddedBroker, quick_recheck: WorkerProcess
) -> None:
    # Given
    worker = quick_recheck
    partition = 1
    await paused_after_own_writes(worker, on_partition(partition, worker.app_id))

    # When another producer registers a device there, and the worker writes nothing after it
    device = on_partition(partition, worker.app_id)
    await foreign_registration(broker, worker, device, "foreign")

    # Then it is decided and visible within a few recheck intervals
    await wait_for(lambda: device_channels(worker, device), 10, "the foreign registration")
    assert await metric(worker, "devreg_commands_read_back_resumes_total", reason="recheck") >= 1
