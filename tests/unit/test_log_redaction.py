"""No log line carries a key (docs/security.md): the key segment of a path is masked, a bug's
traceback has the request's secrets masked, and the formatter masks every configured key."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from aiohttp import ClientSession, web

from services import logs
from services.http.access import ADMIN_HEADER
from services.http.middleware import AccessLog, backendless_errors, redacted_path


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("/app/rest-key/messaging/registrations/d", "/app/***/messaging/registrations/d"),
        ("/app/rest-key", "/app/***"),
        ("/app/rest-key/nowhere?limit=%C2%B2", "/app/***/nowhere"),
        ("/admin/app/messaging/channels", "/admin/app/messaging/channels"),
        ("/api/messaging/registrations/d", "/api/messaging/registrations/d"),
        ("/healthz", "/healthz"),
        ("/", "/"),
    ],
)
def test_given_a_path_then_its_key_segment_is_masked(path: str, shown: str) -> None:
    assert redacted_path(path) == shown


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The root logger set up as devreg sets it up, writing to a buffer."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logs.setup("debug", "text")
    stream = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    yield stream
    root.handlers[:], root.level = saved


def test_given_configured_keys_then_no_line_shows_one_even_in_a_traceback(
    captured: io.StringIO,
) -> None:
    logs.hide(["the-rest-key", "the-admin-key-0123456789"])
    try:
        raise RuntimeError("GET /app/the-rest-key/x with the-admin-key-0123456789")
    except RuntimeError:
        logging.getLogger("any.library").exception("failed on /app/the-rest-key/x")
    text = captured.getvalue()
    assert "failed on /app/***/x" in text
    assert "RuntimeError: GET /app/***/x with ***" in text
    assert "the-rest-key" not in text
    assert "the-admin-key" not in text


async def test_given_a_bug_then_its_traceback_is_logged_without_the_request_s_secrets(
    captured: io.StringIO,
) -> None:
    # Given a handler that fails, quoting everything about its request (as an exception may)
    async def failing(request: web.Request) -> web.Response:
        raise ValueError(f"{request.path} {dict(request.headers)}")

    app = web.Application(middlewares=[backendless_errors])
    app.router.add_get("/{app_id}/{api_key}/boom", failing)
    # When a request with an unknown key, an admin key and a session token reaches it
    headers = {ADMIN_HEADER: "guessed-admin-key", "user-token": "session-secret"}
    # (served as the worker serves: devreg's access log, not aiohttp's, which shows the path)
    runner = web.AppRunner(
        app, access_log=logging.getLogger("devreg.access"), access_log_class=AccessLog
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"{site.name}/some-app/guessed-rest-key/boom"
        async with ClientSession() as session, session.get(url, headers=headers) as response:
            assert response.status == 500
            assert (await response.json())["code"] == 500
    finally:
        await runner.cleanup()

    # Then the traceback is there, and none of them is
    text = captured.getvalue()
    assert "unhandled error on GET /some-app/***/boom" in text
    assert "GET /some-app/***/boom 500" in text  # the access line
    assert "ValueError: /some-app/***/boom" in text
    for secret in ("guessed-rest-key", "guessed-admin-key", "session-secret"):
        assert secret not in text
