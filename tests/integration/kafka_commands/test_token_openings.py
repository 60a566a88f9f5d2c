"""A raw command's token, sealed by the processor in its sealed copy, is remembered as opened
(services/stream/sealing.py): reading the device afterwards opens no token."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from tests.integration.kafka_commands.outside_producer import (
    Topics,
    new_device,
    publish,
    register_command,
    visible,
)
from tests.support import WorkerProcess, metric, wait_for

OPENED = "devreg_tokens_opened_total"


async def test_given_a_raw_command_on_kafka_then_reading_its_device_opens_no_token(
    devreg_worker: WorkerProcess, topics: Topics, producer: AIOKafkaProducer
) -> None:
    # Given a registration published raw to the commands topic
    device = new_device()
    before = await metric(devreg_worker, OPENED)
    await publish(producer, topics.commands, register_command(device))

    # When the device is read once it is visible
    found = await wait_for(lambda: visible(devreg_worker, device), 20, f"GET of {device}")

    # Then its token reads right, and was not opened
    assert found["deviceToken"] == f"token-{device}"
    assert await metric(devreg_worker, OPENED) == before
