"""No line of a worker's log carries a key or a session token (docs/security.md), even at
debug level (one access line per request) and on its error paths: a client gone mid-body, a
request aiohttp cannot parse, a path no route matches, a refused key."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.log.broker import EmbeddedBroker
from tests.support import (
    ADMIN_HEADER,
    ADMIN_KEYS,
    APPS,
    WorkerProcess,
    admin_headers,
    call,
    registration,
    wait_for,
)

GUESSED_REST_KEY = f"guessed-rest-{uuid.uuid4().hex}"  # no configured secret: only redaction
GUESSED_ADMIN_KEY = f"guessed-admin-{uuid.uuid4().hex}"
SESSION = f"session-{uuid.uuid4().hex}"


@pytest.fixture
async def worker(broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[WorkerProcess]:
    process = WorkerProcess(tmp_path / "data", broker.bootstrap, env={"DEVREG_LOG_LEVEL": "debug"})
    await process.start()
    yield process
    await process.stop()


async def raw_request(worker: WorkerProcess, text: bytes, then_close: bool = False) -> bytes:
    """Bytes straight to the worker's socket; its answer (none if `then_close`)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", worker.port)
    try:
        writer.write(text)
        await writer.drain()
        return b"" if then_close else await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()


async def test_given_requests_with_keys_and_tokens_then_the_log_shows_none_of_them(
    worker: WorkerProcess,
) -> None:
    key = APPS[worker.app_id]
    user = {"user-token": SESSION}
    # Given requests carrying every kind of secret, answered and refused
    await call("POST", worker.url("messaging/registrations"), registration("d1"), user)
    await call("GET", worker.url("messaging/registrations/d1"), headers=user)
    await call("GET", worker.url("messaging/channels"), headers=admin_headers())
    await call("GET", worker.admin_url("messaging/channels"), headers=admin_headers())
    await call("GET", worker.url("messaging/channels"), headers={ADMIN_HEADER: GUESSED_ADMIN_KEY})
    await call("GET", worker.url("messaging/registrations/d1", key=GUESSED_REST_KEY))
    await call("GET", worker.url("no/such/route", key=GUESSED_REST_KEY))
    # A client gone mid-body (logged as such, with its path)
    path = f"/{worker.app_id}/{key}/messaging/registrations"
    await raw_request(
        worker,
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"user-token: {SESSION}\r\nContent-Length: 1000\r\n\r\n{{".encode(),
        then_close=True,
    )
    # A request aiohttp cannot parse: a control character in a header holding a token
    answer = await raw_request(
        worker,
        f"GET /{worker.app_id}/{key}/info HTTP/1.1\r\nHost: x\r\n"
        f"user-token: {SESSION}\x01\r\n\r\n".encode(),
    )
    assert answer.split(b"\r\n")[0].endswith(b" 400 Bad Request"), answer

    # Then not one of the secrets, configured or guessed, is in the log (read once the last
    # request's line is there: aiohttp logs a parse error before it answers)...
    await wait_for(lambda: "client went away" in worker.log(), 10, "the client-gone line")
    log = worker.log_path.read_text(errors="replace")
    secrets = [key, ADMIN_KEYS[worker.app_id], GUESSED_REST_KEY, GUESSED_ADMIN_KEY, SESSION]
    assert [s for s in secrets if s in log] == []

    # ...though it has a line for each request (so the check above is not vacuous)
    assert f"GET /{worker.app_id}/***/messaging/registrations/d1 200" in log
    assert f"GET /{worker.app_id}/***/messaging/registrations/d1 401" in log
    assert f"GET /admin/{worker.app_id}/messaging/channels 200" in log
    assert f"GET /{worker.app_id}/***/no/such/route 404" in log
    assert "refused a malformed HTTP request" in log
