"""Slow and abandoned HTTP clients do not pin the server: raw TCP connections that stall in
their headers or their body, or go away half-way, are closed within the configured timeouts,
while normal clients keep being served.

The worker runs with short timeouts (DEVREG_HTTP_IDLE_TIMEOUT_MS, DEVREG_HTTP_BODY_TIMEOUT_MS);
what the server still holds is read from the kernel's socket table (/proc/net/tcp*): a
connection the server has not closed is ESTABLISHED or CLOSE_WAIT on its port.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from events import RegisterDevice
from services.http.api import LINGER_S
from services.http.middleware import MAX_BODY_BYTES
from services.log.broker import EmbeddedBroker
from tests.support import WorkerProcess, admin_headers, call, equals, registration, wait_for
from tests.topics import publish_commands

IDLE_S = 4.0  # no complete request on a connection within this: closed
BODY_S = 3.0  # a body not complete within this: 408, then closed after LINGER_S
WRITE_S = 2.0  # a streamed export its client stopped reading: cut off after this
EXPORT_DEVICES = 2500  # ~0.5 MB of NDJSON: far more than the export's send buffer holds
SLACK_S = 5.0  # scheduling noise on a shared machine
OPEN_STATES = {"01", "08"}  # ESTABLISHED, CLOSE_WAIT


@pytest.fixture(scope="module")
async def worker(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[WorkerProcess]:
    timeouts = {
        "DEVREG_HTTP_IDLE_TIMEOUT_MS": str(int(IDLE_S * 1000)),
        "DEVREG_HTTP_BODY_TIMEOUT_MS": str(int(BODY_S * 1000)),
        "DEVREG_HTTP_WRITE_TIMEOUT_MS": str(int(WRITE_S * 1000)),
    }
    process = WorkerProcess(tmp_path_factory.mktemp("slow"), broker.bootstrap, env=timeouts)
    await process.start()
    yield process
    await process.stop()


def held_by_server(port: int) -> int:
    """Connections the server has not closed on `port`, from the kernel's socket table."""
    held = 0
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            held += int(local.rsplit(":", 1)[1], 16) == port and state in OPEN_STATES
    return held


class RawClient:
    """One TCP connection that sends what it is told, then waits for the server to close it."""

    def __init__(self, worker: WorkerProcess, payload: bytes):
        self.worker, self.payload = worker, payload
        self.answer = b""
        self.closed_after: float | None = None  # seconds from connecting to the server's close

    async def stall(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.worker.port)
        opened = time.monotonic()
        writer.write(self.payload)
        await writer.drain()
        try:
            while chunk := await reader.read(65536):
                self.answer += chunk
        except ConnectionResetError:
            pass
        self.closed_after = time.monotonic() - opened
        writer.close()

    async def abandon(self) -> None:
        """Send, then go away: the server must let go of the connection at once."""
        _, writer = await asyncio.open_connection("127.0.0.1", self.worker.port)
        writer.write(self.payload)
        await writer.drain()
        writer.close()
        await writer.wait_closed()


class Slowloris:
    """Sends one more header byte every 100 ms and never ends its headers."""

    def __init__(self, worker: WorkerProcess):
        self.worker = worker
        self.closed_after: float | None = None

    async def drip(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.worker.port)
        opened = time.monotonic()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        try:
            while not reader.at_eof():
                writer.write(b"a")
                await writer.drain()
                await asyncio.sleep(0.1)  # the client's pace, not a wait for the server
        except ConnectionError:
            pass  # closed by the server while writing
        self.closed_after = time.monotonic() - opened
        writer.close()


def post_head(worker: WorkerProcess, content_length: int) -> bytes:
    path = worker.url("messaging/registrations").removeprefix(worker.base_url)
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {content_length}\r\n\r\n"
    ).encode()


async def request_counts(worker: WorkerProcess) -> dict[str, int]:
    """Requests answered to the registration routes, by status, from /metrics."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{worker.base_url}/metrics") as response,
    ):
        text = await response.text()
    counts: dict[str, int] = {}
    histogram = "devreg_http_request_duration_seconds_count{"
    for line in text.splitlines():
        if line.startswith(histogram) and "registrations" in line:
            status = line.split('status="')[1].split('"')[0]
            counts[status] = counts.get(status, 0) + int(float(line.rsplit(" ", 1)[1]))
    return counts


async def serve_normally(worker: WorkerProcess, count: int) -> None:
    """Register and read back `count` devices, as a well-behaved client does."""
    async with aiohttp.ClientSession() as session:
        for i in range(count):
            body = registration(f"normal-{i}", channels=["news"])
            url = worker.url("messaging/registrations")
            async with session.post(url, json=body) as response:
                assert response.status == 200, await response.text()
            async with session.get(worker.url(f"messaging/registrations/normal-{i}")) as got:
                assert got.status == 200, await got.text()


async def test_given_stalled_and_abandoned_clients_then_others_served_and_stalled_closed(
    worker: WorkerProcess,
) -> None:
    before = await request_counts(worker)
    # Given connections that send nothing, part of their headers, headers and part of a body
    head = post_head(worker, 400)
    silent = [RawClient(worker, b"") for _ in range(10)]
    half_headers = [RawClient(worker, head[: len(head) // 2]) for _ in range(10)]
    half_bodies = [RawClient(worker, head + b'{"deviceId": "x", ') for _ in range(10)]
    stalled = [*silent, *half_headers, *half_bodies]
    stalls = [asyncio.ensure_future(c.stall()) for c in stalled]
    slowloris = Slowloris(worker)
    stalls.append(asyncio.ensure_future(slowloris.drip()))
    # And connections abandoned half-way through their headers or their body
    await asyncio.gather(*(RawClient(worker, p).abandon() for p in [head[:20], head + b"{"] * 10))

    # When normal clients register and read devices meanwhile
    await serve_normally(worker, 10)

    # Then they are served while every stalled connection is still open
    assert not any(c.closed_after for c in [*stalled, slowloris]), "closed before served"
    # And each stalled connection is closed by the server within its timeout: without a
    # complete request (the slowloris too) after the idle timeout, a stalled body after a 408
    deadline = max(IDLE_S, BODY_S + LINGER_S) + SLACK_S
    clients = [*stalled, slowloris]
    await wait_for(lambda: all(c.closed_after for c in clients), deadline, "the server to close")
    await asyncio.gather(*stalls)
    for client in [*silent, *half_headers, slowloris]:
        assert client.closed_after is not None
        assert IDLE_S - 0.1 <= client.closed_after <= IDLE_S + SLACK_S
    assert all(client.answer == b"" for client in [*silent, *half_headers])
    for client in half_bodies:
        assert client.closed_after is not None
        assert BODY_S - 0.1 <= client.closed_after <= BODY_S + LINGER_S + SLACK_S
        status_line, _, rest = client.answer.partition(b"\r\n")
        assert status_line.startswith(b"HTTP/1.1 408"), client.answer
        assert b'"code":5002' in rest.replace(b" ", b"")
    # And the server holds no connection any more: none stalled, none abandoned
    await wait_for(lambda: held_by_server(worker.port) == 0, SLACK_S, "every connection closed")
    # And a client gone half-way through its body is no server error: counted apart (499)
    after = await request_counts(worker)
    answered = {status: n - before.get(status, 0) for status, n in after.items()}
    assert answered.pop("499", 0) > 0
    assert answered == {"200": 20, "408": 10}


async def test_given_a_declared_body_over_the_limit_then_refused_before_it_is_sent_whole(
    worker: WorkerProcess,
) -> None:
    # Given a client that announces a 50 MB body and sends only its first 80 KiB
    client = RawClient(worker, post_head(worker, 50 * 1024 * 1024) + b"x" * (80 * 1024))

    # When it waits for an answer, then it is refused (413) and the connection closed,
    # without the server waiting for the other 49.9 MB
    await asyncio.wait_for(client.stall(), LINGER_S + SLACK_S)
    assert client.answer.startswith(b"HTTP/1.1 413"), client.answer[:200]
    assert str(MAX_BODY_BYTES).encode() in client.answer


async def register_many(worker: WorkerProcess, channel: str, count: int) -> None:
    """`count` devices on `channel`, published straight to the commands topic."""
    commands = (
        RegisterDevice(
            command_id=f"{channel}-{i}",
            app_id=worker.app_id,
            device_id=f"{channel}-{i:05d}",
            device_token=f"{i:05d}".ljust(100, "t"),  # one device per token: each its own
            os="ANDROID",
            os_version="14",
            channels=(channel,),
        )
        for i in range(count)
    )
    await publish_commands(worker.bootstrap or "", f"{worker.prefix}.commands", commands)


async def on_channel(worker: WorkerProcess, channel: str) -> int:
    status, body = await call("GET", worker.admin_url("messaging/channels"), None, admin_headers())
    assert status == 200, body
    return next((c["devices"] for c in body["channels"] if c["channel"] == channel), 0)


async def test_given_a_client_that_stops_reading_an_export_then_it_is_cut_off_and_closed(
    worker: WorkerProcess,
) -> None:
    # Given a channel whose export is far larger than what the server buffers for a client
    await register_many(worker, "bulk", EXPORT_DEVICES)
    await wait_for(lambda: equals(on_channel(worker, "bulk"), EXPORT_DEVICES), 30, "the devices")

    # When a client with a tiny receive window asks for it, reads its first bytes, then stops
    loop = asyncio.get_running_loop()
    with socket.socket() as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.setblocking(False)
        await loop.sock_connect(client, ("127.0.0.1", worker.port))
        path = worker.url("messaging/channels/bulk/devices.ndjson").removeprefix(worker.base_url)
        [(header, key)] = admin_headers().items()
        request = f"GET {path} HTTP/1.1\r\nHost: x\r\n{header}: {key}\r\n\r\n"
        await loop.sock_sendall(client, request.encode())
        head = await loop.sock_recv(client, 64)
        assert head.startswith(b"HTTP/1.1 200"), head

        # Then the server lets go of the connection once the write timeout has passed
        await wait_for(
            lambda: held_by_server(worker.port) == 0, WRITE_S + SLACK_S, "the export to be cut"
        )
        # And what the client can still read ends without the stream's last chunk
        received = head
        try:
            while chunk := await asyncio.wait_for(loop.sock_recv(client, 65536), SLACK_S):
                received += chunk
        except ConnectionResetError:
            pass
    assert not received.endswith(b"0\r\n\r\n")
    assert received.count(b'"deviceId"') < EXPORT_DEVICES
