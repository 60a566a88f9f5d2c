"""One worker for the whole package: starting one takes seconds, and the tests share it safely."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.log.broker import EmbeddedBroker
from tests.support import WorkerProcess


@pytest.fixture(scope="package")
async def devreg_worker(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[WorkerProcess]:
    """Overrides the module-scoped worker of tests/conftest.py for every module here."""
    async with WorkerProcess(tmp_path_factory.mktemp("worker"), broker.bootstrap) as worker:
        yield worker
