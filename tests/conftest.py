"""Shared fixtures: one real Tansu broker per test session, on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from services.log.broker import EmbeddedBroker
from tests.support import WorkerProcess

# Hypothesis budgets. `ci` (the default, `make test`): a fixed, derandomized run, the same
# examples every time. `fuzz` (`make fuzz`, with --hypothesis-profile=fuzz and the random
# seed it prints): a large budget. Tests that name their own example count keep it.
settings.register_profile(
    "ci",
    max_examples=25,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.register_profile(
    "fuzz",
    max_examples=1000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.load_profile("ci")


@pytest.fixture(scope="session")
async def broker(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedBroker]:
    """A real Kafka-protocol broker (Tansu, memory storage) for the whole session."""
    log_path: Path = tmp_path_factory.mktemp("broker") / "tansu.log"
    embedded = EmbeddedBroker(log_path=log_path)
    await embedded.start()
    yield embedded
    await embedded.stop()


@pytest.fixture(scope="module")
async def devreg_worker(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[WorkerProcess]:
    """A devreg worker process on the session broker, with topics of its own."""
    async with WorkerProcess(tmp_path_factory.mktemp("worker"), broker.bootstrap) as worker:
        yield worker


@pytest.fixture
async def expendable_worker(broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[WorkerProcess]:
    """A worker of its own, for a test that may crash it: the module's worker is spared."""
    async with WorkerProcess(tmp_path / "expendable", broker.bootstrap) as worker:
        yield worker
