"""Calling the registration API the way the SDKs do, and checking its bodies as they read them."""

from __future__ import annotations

import uuid
from typing import Any

from tests.support import WorkerProcess, call, registration

REGISTRATION_KEYS = {"id", "deviceId", "deviceToken", "os", "osVersion", "channels", "expiration"}
ERROR_KEYS = {"code", "message", "errorData"}


def new_device(label: str = "dev") -> str:
    return f"{label}-{uuid.uuid4().hex}"


def registrations(worker: WorkerProcess, device_id: str | None = None, **auth: str) -> str:
    path = "messaging/registrations" + (f"/{device_id}" if device_id is not None else "")
    return worker.url(path, **auth)


async def register(
    worker: WorkerProcess, device_id: str, app_id: str | None = None, **fields: Any
) -> str:
    """POST a registration that must succeed; returns the `registrationId` text."""
    auth = {"app_id": app_id} if app_id else {}
    status, body = await call(
        "POST", registrations(worker, **auth), json=registration(device_id, **fields)
    )
    assert status == 200, body
    assert_success_body(body)
    assert set(body) == {"registrationId"}, body
    text: str = body["registrationId"]
    return text


async def get_registration(worker: WorkerProcess, device_id: str) -> dict[str, Any]:
    """GET a registration that must exist; returns the one object of the answer's list."""
    status, body = await call("GET", registrations(worker, device_id))
    assert status == 200, body
    assert_success_body(body)
    assert isinstance(body, list), body
    assert len(body) == 1, body
    (found,) = body
    assert set(found) == REGISTRATION_KEYS, found
    return dict(found)


def assert_error(status: int, body: Any, code: int, http_status: int = 400) -> str:
    """A Backendless error: exactly `{code, message, errorData: {}}`; returns the message."""
    assert status == http_status, (status, body)
    assert isinstance(body, dict), body
    assert set(body) == ERROR_KEYS, body
    assert body["code"] == code, body
    assert isinstance(body["message"], str), body
    assert body["message"], body
    assert body["errorData"] == {}, body
    return str(body["message"])


def assert_success_body(body: Any) -> None:
    """The Swift SDK reads any body with top-level `code` and `message` as a fault."""
    if isinstance(body, dict):
        assert not {"code", "message"} <= set(body), body
