"""The Kafka clients a publisher would use, against the embedded broker of `devreg run`:
each publishes a command (keyed as devreg keys them, with its default partitioner) that
devreg applies. docs/design.md §10 lists which clients work."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import confluent_kafka
import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from services.log.segments import SegmentLog
from tests.support import APPS, WorkerProcess, call, wait_for
from tests.topics import keyed_registration

JS = Path(__file__).resolve().parent.parent / "js"
APP = next(iter(APPS))


@pytest.fixture(scope="module")
async def run(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[WorkerProcess]:
    process = WorkerProcess(tmp_path_factory.mktemp("clients") / "data", None, command="run")
    await process.start()
    yield process
    await process.stop()


def bootstrap(run: WorkerProcess) -> str:
    return (run.data_dir / "embedded-broker.address").read_text().strip()


def command(device: str) -> tuple[bytes, bytes]:
    return keyed_registration(APP, device)


async def with_aiokafka(servers: str, topic: str, key: bytes, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=servers, enable_idempotence=False)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, headers=[("trace", b"t-1")])
    finally:
        await producer.stop()


def _confluent(servers: str, topic: str, key: bytes, value: bytes) -> None:
    # librdkafka's default partitioner is not Java's: murmur2_random is (the README says so).
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": servers, "partitioner": "murmur2_random", "acks": "all"}
    )
    errors: list[object] = []
    producer.produce(topic, value, key=key, on_delivery=lambda e, _: errors.append(e))
    assert producer.flush(30) == 0, "not delivered within 30 s"
    assert errors == [None]


async def with_confluent_kafka(servers: str, topic: str, key: bytes, value: bytes) -> None:
    await asyncio.to_thread(_confluent, servers, topic, key, value)


async def with_kafkajs(servers: str, topic: str, key: bytes, value: bytes) -> None:
    node = shutil.which("node")
    assert node, "node is needed (make test installs tests/js)"
    process = await asyncio.create_subprocess_exec(
        node,
        str(JS / "kafka_publish.js"),
        servers,
        topic,
        key.decode(),
        value.decode(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()


CLIENTS = {
    "aiokafka": with_aiokafka,
    "confluent-kafka": with_confluent_kafka,
    "kafkajs": with_kafkajs,
}


@pytest.mark.parametrize("client", list(CLIENTS))
async def test_given_a_command_published_with_a_client_then_devreg_applies_it(
    run: WorkerProcess, client: str
) -> None:
    # Given a command published to the embedded broker with the client
    device = f"dev-{client}"
    key, value = command(device)
    await CLIENTS[client](bootstrap(run), f"{run.prefix}.commands", key, value)

    # Then devreg applies it: the device is served
    async def registered() -> bool:
        status, body = await call("GET", run.url(f"messaging/registrations/{device}"))
        return status == 200 and body[0]["channels"] == ["news"]

    await wait_for(registered, 30, f"the command published with {client} to be applied")


async def test_given_a_command_with_headers_then_the_kept_log_holds_it_as_published(
    run: WorkerProcess,
) -> None:
    # Given a command published with a header, and applied
    device = "dev-headers"
    key, value = command(device)
    await with_aiokafka(bootstrap(run), f"{run.prefix}.commands", key, value)

    async def registered() -> bool:
        status, _ = await call("GET", run.url(f"messaging/registrations/{device}"))
        return status == 200

    await wait_for(registered, 30, "the command to be applied")

    # Then the kept log holds the command with its key, value and header, and after it the
    # processor's sealed copy, which was decided in its place (docs/design.md §12)
    kept = SegmentLog(run.data_dir / "log", readonly=True)
    try:
        found = [
            r
            for (topic, partition), _ in kept.ends().items()
            if topic == f"{run.prefix}.commands"
            for batch in kept.read(topic, partition, 0)
            for r in batch
            if r.key == key
        ]
    finally:
        kept.close()
    assert [(r.value, r.headers) for r in found[:1]] == [(value, (("trace", b"t-1"),))]
    [copy] = [msgspec.json.decode(r.value or b"") for r in found[1:]]
    original = msgspec.json.decode(value)
    assert copy["command_id"] == original["command_id"]
    assert copy["device_token"].startswith("sealed:1:")
