"""The Backendless wire format: request bodies, response bodies and error bodies."""

from __future__ import annotations

import msgspec
from aiohttp import web

from events import rules
from projections.store import DeviceView


class RegisterBody(msgspec.Struct, frozen=True, kw_only=True):
    """POST …/messaging/registrations. osVersion may arrive as a JSON number."""

    deviceToken: str
    deviceId: str
    os: str
    osVersion: str | int | float = ""
    channels: list[str] | None = None
    expiration: int | float | None = None


register_decoder = msgspec.json.Decoder(RegisterBody)
_encoder = msgspec.json.Encoder()


class WireError(Exception):
    """An error with a Backendless code, answered as `{code, message, errorData}`."""

    def __init__(self, code: int, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def json_response(body: object, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(body), status=status, content_type="application/json")


def error_response(code: int, message: str, status: int = 400) -> web.Response:
    return json_response({"code": code, "message": message, "errorData": {}}, status)


def os_version_text(value: str | int | float) -> str:
    return value if isinstance(value, str) else str(value)


def registration_id_text(registration_ids: dict[str, str]) -> str:
    """`"<ID>::<channel>,<ID>::<channel>"`, in the order the channels were named."""
    return ",".join(f"{rid}::{channel}" for channel, rid in registration_ids.items())


def device_body(device: DeviceView) -> list[dict[str, object]]:
    """GET answer: a list with one registration object."""
    expirations = [exp for _, exp in device.channels.values()]
    # The registration lives as long as its longest-lived channel; null if one never expires.
    expiration = None if None in expirations else max(e for e in expirations if e is not None)
    first_id = next(iter(device.channels.values()))[0]
    return [
        {
            "id": first_id,
            "deviceId": device.device_id,
            "deviceToken": device.device_token,
            "os": device.os,
            "osVersion": device.os_version,
            "channels": list(device.channels),
            "expiration": expiration,
        }
    ]


def decode_register(body: bytes) -> RegisterBody:
    try:
        return register_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise WireError(rules.INVALID_REGISTRATION, f"Invalid registration body: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise WireError(rules.INVALID_REGISTRATION, f"Malformed JSON body: {exc}") from exc
