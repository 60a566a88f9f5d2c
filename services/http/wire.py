"""The Backendless wire format: request bodies, response bodies and error bodies."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from aiohttp import web
from msgspec import Meta

from events import rules
from projections.device_lookup import DeviceView


def _documented(**schema: object) -> Meta:
    """Schema-only constraints: the rules themselves are checked by events.rules, so that a
    violation gets its Backendless code (8000, 5002, 5004) rather than a generic decode error."""
    return Meta(extra_json_schema=schema)


_Text = Annotated[str, _documented(minLength=1, maxLength=500)]
# Case-insensitive IOS/ANDROID/WP/OSX, spelled out: JSON Schema regexes have no inline flags.
_OS_PATTERN = "^([Ii][Oo][Ss]|[Aa][Nn][Dd][Rr][Oo][Ii][Dd]|[Ww][Pp]|[Oo][Ss][Xx])$"


class RegisterBody(msgspec.Struct, frozen=True, kw_only=True):
    """POST …/messaging/registrations. osVersion may arrive as a JSON number."""

    deviceToken: _Text
    deviceId: _Text
    os: Annotated[
        str,
        _documented(pattern="^([Ii][Oo][Ss]|[Aa][Nn][Dd][Rr][Oo][Ii][Dd]|[Ww][Pp]|[Oo][Ss][Xx])$"),
    ]
    osVersion: Annotated[str | int | float, _documented(maxLength=500)] = ""
    channels: (
        Annotated[
            list[Annotated[str, _documented(pattern="^[^/]{1,500}$")]], _documented(maxItems=100)
        ]
        | None
    ) = None
    expiration: Annotated[
        int | float | None, _documented(description="ms since epoch (seconds below 1e11), future")
    ] = None


register_decoder = msgspec.json.Decoder(RegisterBody)
_encoder = msgspec.json.Encoder()


class WireError(Exception):
    """An error with a Backendless code, answered as `{code, message, errorData}`."""

    def __init__(self, code: int, message: str, status: int = 400, retry_after_s: int = 0):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status
        self.retry_after_s = retry_after_s  # a Retry-After header when above 0


def json_response(body: object, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(body), status=status, content_type="application/json")


def error_response(code: int, message: str, status: int = 400) -> web.Response:
    return json_response({"code": code, "message": message, "errorData": {}}, status)


def os_version_text(value: str | int | float) -> str:
    return value if isinstance(value, str) else str(value)


def registration_id_text(registration_ids: dict[str, str]) -> str:
    """`"<ID>::<channel>,<ID>::<channel>"`, in the order the channels were named."""
    return ",".join(f"{rid}::{channel}" for channel, rid in registration_ids.items())


def device_body(device: DeviceView) -> list[Registration]:
    """GET answer: a list with one registration object."""
    expirations = [exp for _, exp in device.channels.values()]
    # The registration lives as long as its longest-lived channel; null if one never expires.
    expiration = None if None in expirations else max(e for e in expirations if e is not None)
    first_id = next(iter(device.channels.values()))[0]
    registration = Registration(
        id=first_id,
        deviceId=device.device_id,
        deviceToken=device.device_token,
        os=device.os,
        osVersion=device.os_version,
        channels=list(device.channels),
        expiration=expiration,
    )
    return [registration]


def decode_register(body: bytes) -> RegisterBody:
    try:
        return register_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise WireError(rules.INVALID_REGISTRATION, f"Invalid registration body: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise WireError(rules.INVALID_REGISTRATION, f"Malformed JSON body: {exc}") from exc


# Response bodies, declared once so the OpenAPI document is generated from the same types.
class RegisterResponse(msgspec.Struct, frozen=True):
    registrationId: str


class Registration(msgspec.Struct, frozen=True):
    id: str
    deviceId: str
    deviceToken: str
    os: str
    osVersion: str
    channels: list[str]
    expiration: int | None


class UnregisterResponse(msgspec.Struct, frozen=True):
    result: bool


class ErrorBody(msgspec.Struct, frozen=True):
    code: int
    message: str
    errorData: dict[str, Any]


class Freshness(msgspec.Struct, frozen=True):
    appliedOffsets: dict[str, int]
    at: int
