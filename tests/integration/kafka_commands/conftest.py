"""One worker and one producer for the whole package, and the worker's topics."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer

from services.log.broker import EmbeddedBroker
from tests.integration.kafka_commands.outside_producer import Topics
from tests.support import WorkerProcess


@pytest.fixture(scope="package")
async def devreg_worker(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[WorkerProcess]:
    """Overrides the module-scoped worker of tests/conftest.py for every module here."""
    async with WorkerProcess(tmp_path_factory.mktemp("worker"), broker.bootstrap) as worker:
        yield worker


@pytest.fixture(scope="package")
async def producer(broker: EmbeddedBroker) -> AsyncIterator[AIOKafkaProducer]:
    # Tansu has no idempotent producer (docs/design.md §10).
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
