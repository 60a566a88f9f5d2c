"""The live tail's bounds: a viewer that stops reading is cut off (the worker keeps nothing
for it without end), a worker serves a bounded number of streams, and every stream ends, with
a reason, when its worker stops."""

from __future__ import annotations

import asyncio
import socket
import time
from contextlib import AsyncExitStack

from events import RegisterDevice
from services.log.broker import EmbeddedBroker
from services.stream.live_tail import MAX_VIEWERS, QUEUE_EVENTS
from tests.integration.live_client import LiveStream
from tests.support import ADMIN_HEADER, ADMIN_KEYS, WorkerProcess, call, metric, wait_for
from tests.topics import publish_commands


async def _stalled_viewer(
    worker: WorkerProcess,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A live stream whose client reads its headers and first event, then nothing more, with
    a small receive buffer: what it does not read piles up on the server's side."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", worker.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(
        f"GET /admin/app-a/live HTTP/1.1\r\nHost: x\r\n{ADMIN_HEADER}: {ADMIN_KEYS['app-a']}"
        "\r\n\r\n".encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"event: ready"), 20)
    assert head.startswith(b"HTTP/1.1 200"), head
    return reader, writer


async def test_given_a_viewer_that_stops_reading_then_it_is_cut_off_and_others_go_on(
    expendable_worker: WorkerProcess, broker: EmbeddedBroker
) -> None:
    worker = expendable_worker
    # Given a viewer that stops reading, and one that reads
    reader, writer = await _stalled_viewer(worker)
    async with LiveStream(worker, device="last-one") as reading:
        await reading.ready()
        # When far more events arrive than a viewer may have waiting
        commands = [
            RegisterDevice(
                command_id=f"flood-{i}",
                app_id="app-a",
                device_id=f"flood-{i:05d}",
                device_token="t" * 200,
                os="IOS",
                os_version="17",
                channels=("flood",),
            )
            for i in range(QUEUE_EVENTS * 3)
        ]
        await publish_commands(broker.bootstrap, f"{worker.prefix}.commands", commands)

        # Then the stalled viewer is cut off, and counted
        async def cut() -> bool:
            return await metric(worker, "devreg_http_live_cut_total") >= 1

        await wait_for(cut, 60, "the slow viewer to be cut off")

        # And the server closed its connection: what the viewer still reads ends
        async def drained() -> None:
            while await reader.read(65536):
                pass

        await asyncio.wait_for(drained(), 30)
        writer.close()
        # And the viewer that reads still gets what comes next
        status, _ = await call(
            "POST",
            worker.url("messaging/registrations"),
            json={"deviceToken": "t", "deviceId": "last-one", "os": "IOS", "channels": ["x"]},
        )
        assert status == 200
        await reading.until(lambda ms: any(k == "message" for k, _ in ms))
        assert await metric(worker, "devreg_live_viewers") == 1


async def test_given_streams_open_when_the_worker_stops_then_they_end_with_a_reason(
    expendable_worker: WorkerProcess,
) -> None:
    async with AsyncExitStack() as stack:
        # Given as many streams as a worker serves
        streams = [
            await stack.enter_async_context(LiveStream(expendable_worker))
            for _ in range(MAX_VIEWERS)
        ]
        for stream in streams:
            await stream.ready()
        # Then one more is refused, with a reason
        status, body = await call(
            "GET",
            expendable_worker.admin_url("live"),
            headers={ADMIN_HEADER: ADMIN_KEYS["app-a"]},
        )
        assert (status, body["code"]) == (503, 5903)

        # When the worker is told to stop
        started = time.monotonic()
        assert await expendable_worker.stop() == 0

        # Then it stopped promptly, and every stream was told why it ended
        assert time.monotonic() - started < 15
        for stream in streams:
            ends = await stream.until(lambda ms: any(k == "end" for k, _ in ms), 5)
            assert ends[-1] == ("end", {"reason": "the worker is stopping"})
