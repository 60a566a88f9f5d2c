"""A worker that cannot finish starting exits, saying why, instead of hanging."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from services.log.broker import EmbeddedBroker
from tests.support import WorkerProcess


async def test_given_the_http_port_taken_when_a_worker_starts_then_it_exits_saying_why(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    # Given the worker's HTTP port held by another process (after faust and Kafka started)
    worker = WorkerProcess(tmp_path / "data", broker.bootstrap)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", worker.port))
        squatter.listen()

        # When it starts, Then it exits with an error, well before the test's deadline
        try:
            with pytest.raises(AssertionError, match="devreg exited with 1"):
                await worker.start(deadline_s=25)
        finally:
            await worker.kill()  # a no-op once it has exited
    assert "address already in use" in worker.log().lower()
