"""SIGKILL the worker while registrations flow in over HTTP, decided by the hand-off at Kafka's
acknowledgement (services/stream/hand_off.py), while another producer publishes commands for
the same devices straight to the commands topic: every command ends with one outcome, every
registration answered 200 is there after the restarts, the log's chains hold, and the
projection passes `devreg verify`."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from events import AnyEvent, RegisterDevice, decode_command, decode_event, decode_outcome
from services.log.broker import EmbeddedBroker
from tests.log_checks import assert_chains, committed
from tests.support import WorkerProcess, devreg, metric, now_ms, registration, sized, wait_for
from tests.topics import publish_commands, read_records

DEVICES = 120
HTTP_WRITES = sized(test=2000, soak=20_000)
KAFKA_COMMANDS = sized(test=600, soak=6000)
CLIENTS = 16
DEADLINE_S = sized(test=90, soak=900)


class Traffic:
    """HTTP clients registering devices on random channels, each POST remembered with its
    answer; and another producer's commands for the same devices, straight to Kafka."""

    def __init__(self, worker: WorkerProcess, bootstrap: str):
        self.worker, self.bootstrap = worker, bootstrap
        self.rng = random.Random(11)
        self.answered: list[tuple[str, str]] = []  # (device, channel) answered 200
        self.failed = 0  # not answered 200: the worker was down or restarting
        self.sent = 0  # POSTs sent, answered or not
        self.handed_off = 0.0  # commands the hand-off decided, summed over the incarnations

    def device(self) -> str:
        return f"h{self.rng.randrange(DEVICES):03d}"

    async def client(self, session: aiohttp.ClientSession) -> None:
        url = self.worker.url("messaging/registrations")
        end = time.monotonic() + DEADLINE_S
        while len(self.answered) < HTTP_WRITES and time.monotonic() < end:
            self.sent += 1
            device, channel = self.device(), f"c{self.rng.randrange(8)}"
            try:
                async with session.post(url, json=registration(device, channels=[channel])) as r:
                    ok = r.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if ok:
                self.answered.append((device, channel))
            else:
                self.failed += 1
                await asyncio.sleep(0.05)  # the worker is down: do not spin

    async def kafka(self) -> None:
        topic = f"{self.worker.prefix}.commands"
        for start in range(0, KAFKA_COMMANDS, 20):
            commands = [
                RegisterDevice(
                    command_id=f"k{start + i}-{uuid.uuid4().hex[:6]}",
                    app_id=self.worker.app_id,
                    device_id=self.device(),
                    issued_at=now_ms(),
                    device_token=f"kafka-token-{start + i}",
                    os="IOS",
                    os_version="17",
                    channels=(f"k{self.rng.randrange(4)}",),
                )
                for i in range(min(20, KAFKA_COMMANDS - start))
            ]
            await publish_commands(self.bootstrap, topic, commands)
            await asyncio.sleep(0.02)  # spread over the HTTP traffic

    async def kills(self, worker: WorkerProcess) -> list[bool]:
        """Kill the worker at a quarter and at 60% of the HTTP writes; True where the kill
        landed while commands were still flowing."""
        interrupted = []
        for fraction in (0.25, 0.6):
            target = int(HTTP_WRITES * fraction)
            await wait_for(lambda t=target: len(self.answered) >= t, DEADLINE_S, f"{target} ok")
            self.handed_off += await metric(worker, "devreg_commands_handed_off_total")
            await worker.kill()
            interrupted.append(len(self.answered) < HTTP_WRITES)
            await worker.start()
        return interrupted


@pytest.fixture
async def worker(broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[WorkerProcess]:
    # Small batches: more places for a kill to land.
    process = WorkerProcess(tmp_path / "data", broker.bootstrap, env={"DEVREG_BATCH_SIZE": "40"})
    yield process
    await process.stop()


async def test_given_kills_while_http_and_kafka_commands_flow_then_one_effect_per_command(
    worker: WorkerProcess, broker: EmbeddedBroker
) -> None:
    # Given a worker taking registrations over HTTP and another producer's over Kafka
    await worker.start()
    traffic = Traffic(worker, broker.bootstrap)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        flowing = asyncio.gather(
            *(traffic.client(session) for _ in range(CLIENTS)), traffic.kafka()
        )
        # When the worker is SIGKILLed twice mid-stream and restarted
        try:
            interrupted = await traffic.kills(worker)
        finally:
            await flowing
    assert any(interrupted), "no kill landed while commands flowed: nothing was tested"
    assert traffic.handed_off > 0, "the hand-off decided nothing: it was not tested"

    # Then every command in the log gets exactly one outcome (re-emitted copies identical)
    bootstrap = broker.bootstrap
    commands = await read_records(bootstrap, f"{worker.prefix}.commands", 1, DEADLINE_S)
    command_ids = {decode_command(r.value or b"").command_id for r in commands}
    assert len(command_ids) >= len(traffic.answered) + KAFKA_COMMANDS
    outcomes_topic = f"{worker.prefix}.outcomes"
    by_command: dict[str, set[bytes]] = defaultdict(set)

    async def every_outcome() -> bool:
        records = await read_records(bootstrap, outcomes_topic, len(command_ids), DEADLINE_S)
        by_command.clear()
        for record in records:
            by_command[decode_outcome(record.value or b"").command_id].add(record.value or b"")
        return set(by_command) >= command_ids

    await wait_for(every_outcome, DEADLINE_S, "an outcome for every command")
    assert set(by_command) == command_ids
    assert all(len(copies) == 1 for copies in by_command.values())

    # And every registration answered 200 is visible, on the channel it named
    expected: dict[str, set[str]] = defaultdict(set)
    for device, channel in traffic.answered:
        expected[device].add(channel)
    for device, channels in expected.items():
        status, body = await call_get(worker, device)
        assert status == 200, body
        assert channels <= set(body[0]["channels"])

    # And per device the log's versions are gapless, the chains intact, copies identical
    events = await read_records(bootstrap, f"{worker.prefix}.events", 1, DEADLINE_S)
    by_id: dict[str, set[bytes]] = defaultdict(set)
    for record in events:
        by_id[decode_event(record.value or b"").event_id].add(record.value or b"")
    assert all(len(copies) == 1 for copies in by_id.values())
    unique: list[AnyEvent] = [decode_event(next(iter(v))) for v in by_id.values()]
    assert_chains(unique)

    # And `devreg verify` (rebuild, compare, every chain) agrees with the live projection
    projection = worker.data_dir / "projection.sqlite"
    events_topic = f"{worker.prefix}.events"
    await wait_for(
        lambda: sum(committed(projection, events_topic).values()) >= len(events),
        DEADLINE_S,
        "the projection to apply every event",
    )
    code, out, err = await devreg(worker, "verify", "--quiet", deadline_s=DEADLINE_S)
    assert code == 0, (out, err)


async def call_get(worker: WorkerProcess, device: str) -> tuple[int, object]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(worker.url(f"messaging/registrations/{device}")) as response,
    ):
        return response.status, await response.json(content_type=None)
